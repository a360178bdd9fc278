/*
 * tests/test_rl_render.c — webhook, Slack and email bodies from notice facts: shapes read
 * back with a JSON parser, user text that tries to break out (quotes, CR/LF, Slack
 * markup, non-ASCII), invalid facts, allocation failures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>
#include <yajl/yajl_tree.h>

#include "core/buf.h"
#include "rules/render.h"
#include "core/alloc.h"

static const char firing[] =
    "{\"notice\":\"firing\",\"status\":\"firing\",\"alert_id\":42,"
    "\"alert_created_at\":\"2024-05-01T10:00:00Z\",\"rule_id\":7,\"rule\":\"api errors\","
    "\"metric\":\"count{level>=ERROR}[5m]\",\"operator\":\"gt\",\"threshold\":0.1,"
    "\"value\":12.5,\"severity\":\"critical\",\"escalation_level\":0,"
    "\"message\":\"api errors: count{level>=ERROR}[5m] = 12.5 > 0.1\","
    "\"starts_at\":\"2024-05-01T10:00:00Z\",\"ends_at\":null,"
    "\"context\":{\"window_s\":300,\"events\":[1,2],\"ok\":true},\"link\":null}";

static const char resolved[] =
    "{\"notice\":\"resolved\",\"status\":\"resolved\",\"alert_id\":42,\"rule_id\":7,"
    "\"rule\":\"api errors\",\"severity\":\"critical\",\"value\":0,\"threshold\":0.1,"
    "\"operator\":\"gt\",\"starts_at\":\"2024-05-01T10:00:00Z\","
    "\"ends_at\":\"2024-05-01T10:07:00Z\",\"link\":\"https://aggd.example/alerts/42\"}";

/* Renders <facts> as a webhook body and parses it back. Caller frees with yajl_tree_free. */
static yajl_val webhook_of(const char *facts)
{
    struct agg_buf out;
    struct agg_err err = {0};
    yajl_val v;

    agg_buf_init(&out);
    assert_int_equal(rl_render_webhook(facts, strlen(facts), &out, &err), AGG_OK);
    v = yajl_tree_parse(out.data, NULL, 0);
    assert_non_null(v);
    agg_buf_clear(&out);
    return v;
}

static const char *str_at(yajl_val v, const char *const *path)
{
    yajl_val s = yajl_tree_get(v, (const char **)path, yajl_t_string);

    assert_non_null(s);
    return YAJL_GET_STRING(s);
}

static const char *num_at(yajl_val v, const char *const *path)
{
    yajl_val s = yajl_tree_get(v, (const char **)path, yajl_t_number);

    assert_non_null(s);
    return YAJL_GET_NUMBER(s);
}

static yajl_val first_alert(yajl_val v)
{
    const char *path[] = {"alerts", NULL};
    yajl_val a = yajl_tree_get(v, path, yajl_t_array);

    assert_non_null(a);
    assert_int_equal(a->u.array.len, 1);
    return a->u.array.values[0];
}

static void test_render_webhook_has_alertmanager_v4_shape(void **state)
{
    yajl_val v = webhook_of(firing);
    yajl_val a = first_alert(v);
    const char *fp = str_at(a, (const char *const[]){"fingerprint", NULL});

    (void)state;
    assert_string_equal(str_at(v, (const char *const[]){"version", NULL}), "4");
    assert_string_equal(str_at(v, (const char *const[]){"status", NULL}), "firing");
    assert_string_equal(str_at(v, (const char *const[]){"receiver", NULL}), "aggd");
    assert_string_equal(str_at(v, (const char *const[]){"groupLabels", "alertname", NULL}),
                        "api errors");
    assert_string_equal(str_at(v, (const char *const[]){"commonLabels", "severity", NULL}),
                        "critical");
    assert_string_equal(str_at(a, (const char *const[]){"status", NULL}), "firing");
    assert_string_equal(str_at(a, (const char *const[]){"labels", "alertname", NULL}),
                        "api errors");
    assert_string_equal(str_at(a, (const char *const[]){"labels", "rule_id", NULL}), "7");
    assert_string_equal(str_at(a, (const char *const[]){"startsAt", NULL}), "2024-05-01T10:00:00Z");
    assert_string_equal(str_at(a, (const char *const[]){"endsAt", NULL}), "0001-01-01T00:00:00Z");
    assert_string_equal(str_at(a, (const char *const[]){"annotations", "description", NULL}),
                        "api errors: count{level>=ERROR}[5m] = 12.5 > 0.1");
    assert_non_null(
        strstr(str_at(a, (const char *const[]){"annotations", "summary", NULL}), "12.5 (> 0.1)"));
    assert_int_equal(strlen(fp), 16);
    assert_int_equal(strspn(fp, "0123456789abcdef"), 16);
    /* aggd's own fields; numbers keep their original text */
    assert_string_equal(num_at(v, (const char *const[]){"alert_id", NULL}), "42");
    assert_string_equal(num_at(v, (const char *const[]){"metric_value", NULL}), "12.5");
    assert_string_equal(num_at(v, (const char *const[]){"threshold", NULL}), "0.1");
    assert_string_equal(num_at(v, (const char *const[]){"escalation_level", NULL}), "0");
    assert_string_equal(str_at(v, (const char *const[]){"rule", NULL}), "api errors");
    assert_string_equal(str_at(v, (const char *const[]){"notice", NULL}), "firing");
    assert_string_equal(num_at(v, (const char *const[]){"context", "window_s", NULL}), "300");
    assert_true(
        YAJL_IS_TRUE(yajl_tree_get(v, (const char *[]){"context", "ok", NULL}, yajl_t_any)));
    yajl_tree_free(v);
}

static void test_render_webhook_resolved_has_end_and_same_fingerprint(void **state)
{
    yajl_val f = webhook_of(firing);
    yajl_val r = webhook_of(resolved);
    yajl_val ra = first_alert(r);
    const char *fp[] = {"fingerprint", NULL};

    (void)state;
    assert_string_equal(str_at(r, (const char *const[]){"status", NULL}), "resolved");
    assert_string_equal(str_at(ra, (const char *const[]){"endsAt", NULL}), "2024-05-01T10:07:00Z");
    assert_string_equal(str_at(ra, (const char *const[]){"generatorURL", NULL}),
                        "https://aggd.example/alerts/42");
    assert_string_equal(str_at(first_alert(f), fp), str_at(ra, fp));
    yajl_tree_free(f);
    yajl_tree_free(r);
}

static void test_render_webhook_fingerprint_differs_per_alert(void **state)
{
    char other[sizeof(resolved) + 8];
    const char *at = strstr(resolved, "\"alert_id\":42");
    yajl_val a, b;

    (void)state;
    assert_true(snprintf(other, sizeof(other), "%.*s\"alert_id\":43%s", (int)(at - resolved),
                         resolved, at + strlen("\"alert_id\":42")) < (int)sizeof(other));
    a = webhook_of(resolved);
    b = webhook_of(other);
    assert_string_not_equal(str_at(first_alert(a), (const char *const[]){"fingerprint", NULL}),
                            str_at(first_alert(b), (const char *const[]){"fingerprint", NULL}));
    yajl_tree_free(a);
    yajl_tree_free(b);
}

static void test_render_webhook_keeps_hostile_rule_names_inside_strings(void **state)
{
    const char facts[] = "{\"notice\":\"firing\",\"status\":\"firing\",\"alert_id\":1,"
                         "\"rule_id\":2,\"rule\":\"a\\\"},{\\\"x\\\":\\\"\\n\\u00e9\","
                         "\"starts_at\":\"2024-05-01T10:00:00Z\"}";
    yajl_val v = webhook_of(facts);

    (void)state;
    assert_string_equal(str_at(v, (const char *const[]){"rule", NULL}), "a\"},{\"x\":\"\n\xc3\xa9");
    assert_string_equal(str_at(v, (const char *const[]){"commonLabels", "severity", NULL}),
                        "unknown");
    yajl_tree_free(v);
}

static void test_render_rejects_invalid_facts_naming_the_field(void **state)
{
    static const struct {
        const char *facts;
        const char *why;
    } bad[] = {
        {"", "not a JSON object"},
        {"[1]", "not a JSON object"},
        {"{\"notice\":\"firing\"", "not a JSON object"},
        {"{\"status\":\"firing\",\"alert_id\":1,\"rule_id\":2,\"rule\":\"r\","
         "\"starts_at\":\"2024-05-01T10:00:00Z\"}",
         "\"notice\" is missing"},
        {"{\"notice\":\"fired\",\"status\":\"firing\",\"alert_id\":1,\"rule_id\":2,\"rule\":\"r\","
         "\"starts_at\":\"2024-05-01T10:00:00Z\"}",
         "\"notice\" must be"},
        {"{\"notice\":\"firing\",\"status\":\"repeat\",\"alert_id\":1,\"rule_id\":2,\"rule\":\"r\","
         "\"starts_at\":\"2024-05-01T10:00:00Z\"}",
         "\"status\" must be"},
        {"{\"notice\":\"firing\",\"status\":\"firing\",\"alert_id\":\"1\",\"rule_id\":2,"
         "\"rule\":\"r\",\"starts_at\":\"2024-05-01T10:00:00Z\"}",
         "\"alert_id\" must be an integer"},
        {"{\"notice\":\"firing\",\"status\":\"firing\",\"alert_id\":1.5,\"rule_id\":2,"
         "\"rule\":\"r\",\"starts_at\":\"2024-05-01T10:00:00Z\"}",
         "\"alert_id\" must be an integer"},
        {"{\"notice\":\"firing\",\"status\":\"firing\",\"alert_id\":1,\"rule_id\":2,"
         "\"starts_at\":\"2024-05-01T10:00:00Z\"}",
         "\"rule\" is missing"},
        {"{\"notice\":\"firing\",\"status\":\"firing\",\"alert_id\":1,\"rule_id\":2,"
         "\"rule\":\"r\",\"starts_at\":\"yesterday\"}",
         "\"starts_at\" is not an ISO 8601"},
        {"{\"notice\":\"firing\",\"status\":\"firing\",\"alert_id\":1,\"rule_id\":2,"
         "\"rule\":\"r\",\"starts_at\":\"2024-05-01T10:00:00Z\",\"threshold\":\"5\"}",
         "\"threshold\" must be a number"},
        {"{\"notice\":\"firing\",\"status\":\"firing\",\"alert_id\":1,\"rule_id\":2,"
         "\"rule\":\"r\",\"starts_at\":\"2024-05-01T10:00:00Z\",\"operator\":\"ge\"}",
         "\"operator\" must be"},
        {"{\"notice\":\"firing\",\"status\":\"firing\",\"alert_id\":1,\"rule_id\":2,"
         "\"rule\":\"r\",\"starts_at\":\"2024-05-01T10:00:00Z\",\"message\":7}",
         "\"message\" must be a string"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct agg_buf out;
        struct agg_err err = {0};
        size_t n = strlen(bad[i].facts);

        agg_buf_init(&out);
        assert_int_equal(rl_render_webhook(bad[i].facts, n, &out, &err), AGG_EINVAL);
        if (strstr(err.msg, bad[i].why) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.msg, bad[i].why);
        assert_int_equal(rl_render_slack(bad[i].facts, n, &out, NULL), AGG_EINVAL);
        assert_int_equal(rl_render_email(bad[i].facts, n, "a@b", "c@d", "m1", NULL, &out, NULL),
                         AGG_EINVAL);
        agg_buf_clear(&out);
    }
}

static void test_render_slack_escapes_markup_and_links_the_alert(void **state)
{
    const char facts[] = "{\"notice\":\"escalation\",\"status\":\"firing\",\"alert_id\":5,"
                         "\"rule_id\":2,\"rule\":\"<!channel> & co\",\"severity\":\"high\","
                         "\"value\":3,\"threshold\":2,\"operator\":\"gte\",\"escalation_level\":2,"
                         "\"metric\":\"count{level>=ERROR}[5m]\","
                         "\"starts_at\":\"2024-05-01T10:00:00Z\",\"link\":\"https://x/a/5\"}";
    struct agg_buf out;
    yajl_val v, blocks;
    bool saw_button = false, saw_value = false;

    (void)state;
    agg_buf_init(&out);
    assert_int_equal(rl_render_slack(facts, sizeof(facts) - 1, &out, NULL), AGG_OK);
    v = yajl_tree_parse(out.data, NULL, 0);
    assert_non_null(v);
    assert_non_null(
        strstr(str_at(v, (const char *const[]){"text", NULL}), "&lt;!channel&gt; &amp; co"));
    assert_null(strstr(str_at(v, (const char *const[]){"text", NULL}), "<!channel>"));
    blocks = yajl_tree_get(v, (const char *[]){"blocks", NULL}, yajl_t_array);
    assert_non_null(blocks);
    /* the header is plain text: shown as typed, not escaped */
    assert_string_equal(
        str_at(blocks->u.array.values[0], (const char *const[]){"text", "text", NULL}),
        "ESCALATION high: <!channel> & co");
    for (size_t i = 0; i < blocks->u.array.len; i++) {
        yajl_val b = blocks->u.array.values[i];
        yajl_val fields = yajl_tree_get(b, (const char *[]){"fields", NULL}, yajl_t_array);
        yajl_val els = yajl_tree_get(b, (const char *[]){"elements", NULL}, yajl_t_array);

        for (size_t j = 0; fields != NULL && j < fields->u.array.len; j++)
            saw_value = saw_value || strcmp(str_at(fields->u.array.values[j],
                                                   (const char *const[]){"text", NULL}),
                                            "*Value*\n3 &gt;= 2") == 0;
        for (size_t j = 0; els != NULL && j < els->u.array.len; j++) {
            yajl_val url =
                yajl_tree_get(els->u.array.values[j], (const char *[]){"url", NULL}, yajl_t_string);
            saw_button = saw_button || (url != NULL && strcmp(url->u.string, "https://x/a/5") == 0);
        }
    }
    assert_true(saw_value);
    assert_true(saw_button);
    yajl_tree_free(v);
    agg_buf_clear(&out);
}

static void test_render_slack_header_is_cut_on_a_character_boundary(void **state)
{
    char facts[1024];
    char rule[400] = "";
    struct agg_buf out;
    yajl_val v, blocks;
    const char *head;

    (void)state;
    for (int i = 0; i < 100; i++)
        memcpy(rule + 2 * i, "\xc3\xa9", 3); /* é: two bytes each, NUL after the last */
    snprintf(facts, sizeof(facts),
             "{\"notice\":\"firing\",\"status\":\"firing\",\"alert_id\":1,\"rule_id\":2,"
             "\"rule\":\"%s\",\"starts_at\":\"2024-05-01T10:00:00Z\"}",
             rule);
    agg_buf_init(&out);
    assert_int_equal(rl_render_slack(facts, strlen(facts), &out, NULL), AGG_OK);
    v = yajl_tree_parse(out.data, NULL, 0);
    assert_non_null(v);
    blocks = yajl_tree_get(v, (const char *[]){"blocks", NULL}, yajl_t_array);
    head = str_at(blocks->u.array.values[0], (const char *const[]){"text", "text", NULL});
    assert_true(strlen(head) <= 150);
    assert_true(strlen(head) >= 140);
    assert_true(agg_utf8_is_clean(head, strlen(head)));
    yajl_tree_free(v);
    agg_buf_clear(&out);
}

/* The header block of <msg> (up to the blank line), NUL-terminated in <out>. */
static void headers_of(const char *msg, char *out, size_t size)
{
    const char *end = strstr(msg, "\r\n\r\n");

    assert_non_null(end);
    assert_true((size_t)(end - msg) + 3 < size);
    memcpy(out, msg, (size_t)(end - msg) + 2);
    out[end - msg + 2] = '\0';
}

static void assert_crlf_and_short_lines(const char *msg, size_t len)
{
    size_t col = 0;

    for (size_t i = 0; i < len; i++) {
        if (msg[i] == '\n') {
            assert_true(i > 0 && msg[i - 1] == '\r');
            col = 0;
        } else {
            assert_true(msg[i] != '\r' || msg[i + 1] == '\n');
            col++;
            assert_true(col <= 998);
        }
    }
}

static void test_render_email_first_notice_has_headers_and_facts(void **state)
{
    struct agg_buf out;
    char head[2048];
    struct agg_err err = {0};

    (void)state;
    agg_buf_init(&out);
    assert_int_equal(rl_render_email(firing, sizeof(firing) - 1, "aggd@example.org",
                                     "ops@example.org", "n-42-1", NULL, &out, &err),
                     AGG_OK);
    assert_crlf_and_short_lines(out.data, out.len);
    headers_of(out.data, head, sizeof(head));
    assert_non_null(strstr(head, "From: aggd@example.org\r\n"));
    assert_non_null(strstr(head, "To: ops@example.org\r\n"));
    assert_non_null(strstr(head, "Subject: [aggd] FIRING critical: api errors\r\n"));
    assert_non_null(strstr(head, "Message-ID: <n-42-1@aggd>\r\n"));
    assert_non_null(strstr(head, "MIME-Version: 1.0\r\n"));
    assert_non_null(strstr(head, "Content-Type: text/plain; charset=utf-8\r\n"));
    assert_non_null(strstr(head, "Content-Transfer-Encoding: 8bit\r\n"));
    assert_null(strstr(head, "In-Reply-To"));
    assert_null(strstr(head, "References"));
    {
        const char *d = strstr(head, "\r\nDate: ");
        int day, year, h, m, s;
        char wd[4], mon[4];

        assert_non_null(d);
        assert_int_equal(
            sscanf(d + 8, "%3[^,], %d %3s %d %d:%d:%d +0000", wd, &day, mon, &year, &h, &m, &s), 7);
        assert_true(year >= 2024 && day >= 1 && day <= 31);
        assert_non_null(strstr("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec", mon));
    }
    assert_non_null(strstr(out.data, "\r\n\r\nFIRING critical: api errors\r\n"));
    assert_non_null(strstr(out.data, "Value:      12.5\r\n"));
    assert_non_null(strstr(out.data, "Condition:  gt 0.1\r\n"));
    assert_non_null(strstr(out.data, "Metric:     count{level>=ERROR}[5m]\r\n"));
    assert_non_null(strstr(out.data, "\"window_s\": 300"));
    agg_buf_clear(&out);
}

static void test_render_email_follow_up_threads_on_first_message(void **state)
{
    struct agg_buf out;
    char head[2048];

    (void)state;
    agg_buf_init(&out);
    assert_int_equal(rl_render_email(resolved, sizeof(resolved) - 1, "a@b", "c@d", "n-42-9",
                                     "n-42-1", &out, NULL),
                     AGG_OK);
    headers_of(out.data, head, sizeof(head));
    assert_non_null(strstr(head, "Subject: [aggd] RESOLVED critical: api errors\r\n"));
    assert_non_null(strstr(head, "Message-ID: <n-42-9@aggd>\r\n"));
    assert_non_null(strstr(head, "In-Reply-To: <n-42-1@aggd>\r\n"));
    assert_non_null(strstr(head, "References: <n-42-1@aggd>\r\n"));
    assert_non_null(strstr(out.data, "Ended:      2024-05-01T10:07:00Z\r\n"));
    assert_non_null(strstr(out.data, "Link:       https://aggd.example/alerts/42\r\n"));
    agg_buf_clear(&out);
}

static void test_render_email_header_injection_is_neutralised(void **state)
{
    const char facts[] = "{\"notice\":\"firing\",\"status\":\"firing\",\"alert_id\":1,"
                         "\"rule_id\":2,\"rule\":\"x\\r\\nBcc: victim@example.org\\n\\nhi\","
                         "\"severity\":\"low\\r\\nX-Evil: 1\","
                         "\"message\":\"line1\\nline2\\r\\n.\\rline3\","
                         "\"starts_at\":\"2024-05-01T10:00:00Z\"}";
    struct agg_buf out;
    char head[2048];

    (void)state;
    agg_buf_init(&out);
    assert_int_equal(
        rl_render_email(facts, sizeof(facts) - 1, "a@b", "c@d", "m1", NULL, &out, NULL), AGG_OK);
    assert_crlf_and_short_lines(out.data, out.len);
    headers_of(out.data, head, sizeof(head));
    assert_null(strstr(head, "\r\nBcc:"));
    assert_null(strstr(head, "\r\nX-Evil:"));
    assert_non_null(strstr(head, "Subject: [aggd] FIRING low  X-Evil: 1: x  Bcc: victim"));
    assert_non_null(strstr(out.data, "line1\r\nline2\r\n.line3"));
    agg_buf_clear(&out);
}

static void test_render_email_non_ascii_subject_is_rfc2047_encoded(void **state)
{
    const char facts[] = "{\"notice\":\"firing\",\"status\":\"firing\",\"alert_id\":1,"
                         "\"rule_id\":2,\"rule\":\"Fehlerquote \xc3\xbc"
                         "ber Schwelle \xe2\x80\x94 Zahlungsdienst f\xc3\xbcr Kunden\","
                         "\"severity\":\"high\",\"starts_at\":\"2024-05-01T10:00:00Z\"}";
    struct agg_buf out, decoded;
    char head[2048];
    const char *p;

    (void)state;
    agg_buf_init(&out);
    agg_buf_init(&decoded);
    assert_int_equal(
        rl_render_email(facts, sizeof(facts) - 1, "a@b", "c@d", "m1", NULL, &out, NULL), AGG_OK);
    headers_of(out.data, head, sizeof(head));
    p = strstr(head, "Subject: ");
    assert_non_null(p);
    for (size_t i = 0; head[i] != '\0'; i++)
        assert_true((unsigned char)head[i] < 0x80);
    /* decode every encoded word and join them */
    while ((p = strstr(p, "=?UTF-8?B?")) != NULL) {
        const char *end = strstr(p + 10, "?=");
        unsigned char bin[64];
        size_t n = 0;

        assert_non_null(end);
        assert_true(end - p + 2 <= 75);
        assert_int_equal(sodium_base642bin(bin, sizeof(bin), p + 10, (size_t)(end - p - 10), NULL,
                                           &n, NULL, sodium_base64_VARIANT_ORIGINAL),
                         0);
        assert_true(agg_utf8_is_clean((const char *)bin, n)); /* words split on characters */
        assert_int_equal(agg_buf_append(&decoded, bin, n), AGG_OK);
        p = end + 2;
    }
    assert_string_equal(decoded.data, "[aggd] FIRING high: Fehlerquote \xc3\xbc"
                                      "ber Schwelle \xe2\x80\x94 Zahlungsdienst f\xc3\xbcr Kunden");
    agg_buf_clear(&out);
    agg_buf_clear(&decoded);
}

static void test_render_email_rejects_bad_addresses_and_ids(void **state)
{
    struct agg_buf out;
    struct agg_err err = {0};
    const size_t n = sizeof(firing) - 1;

    (void)state;
    agg_buf_init(&out);
    assert_int_equal(rl_render_email(firing, n, "a@b\r\nBcc: x@y", "c@d", "m", NULL, &out, &err),
                     AGG_EINVAL);
    assert_non_null(strstr(err.msg, "sender"));
    assert_int_equal(rl_render_email(firing, n, "a@b", "", "m", NULL, &out, &err), AGG_EINVAL);
    assert_non_null(strstr(err.msg, "recipient"));
    assert_int_equal(rl_render_email(firing, n, "a@b", "c@d", "m>x", NULL, &out, &err), AGG_EINVAL);
    assert_non_null(strstr(err.msg, "message id"));
    assert_int_equal(rl_render_email(firing, n, "a@b", "c@d", "m", "t\n", &out, &err), AGG_EINVAL);
    assert_non_null(strstr(err.msg, "thread id"));
    assert_int_equal(out.len, 0);
    agg_buf_clear(&out);
}

static void test_render_email_breaks_very_long_lines(void **state)
{
    static char facts[8192];
    char msg[5001];
    struct agg_buf out;

    (void)state;
    memset(msg, 'x', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    snprintf(facts, sizeof(facts),
             "{\"notice\":\"repeat\",\"status\":\"firing\",\"alert_id\":1,\"rule_id\":2,"
             "\"rule\":\"r\",\"message\":\"%s\",\"starts_at\":\"2024-05-01T10:00:00Z\"}",
             msg);
    agg_buf_init(&out);
    assert_int_equal(rl_render_email(facts, strlen(facts), "a@b", "c@d", "m", "t", &out, NULL),
                     AGG_OK);
    assert_crlf_and_short_lines(out.data, out.len);
    assert_non_null(strstr(out.data, "Subject: [aggd] REPEAT unknown: r\r\n"));
    agg_buf_clear(&out);
}

static void test_render_survives_allocation_failures(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        struct agg_buf a, b, c;
        int ra, rb, rc;

        agg_buf_init(&a);
        agg_buf_init(&b);
        agg_buf_init(&c);
        agg_alloc_fail_after(n);
        ra = rl_render_webhook(firing, sizeof(firing) - 1, &a, NULL);
        rb = rl_render_slack(firing, sizeof(firing) - 1, &b, NULL);
        rc = rl_render_email(firing, sizeof(firing) - 1, "a@b", "c@d", "m", "t", &c, NULL);
        agg_alloc_fail_after(-1);
        agg_buf_clear(&a);
        agg_buf_clear(&b);
        agg_buf_clear(&c);
        assert_true(ra == AGG_OK || ra == AGG_ENOMEM);
        assert_true(rb == AGG_OK || rb == AGG_ENOMEM);
        assert_true(rc == AGG_OK || rc == AGG_ENOMEM);
        if (ra == AGG_OK && rb == AGG_OK && rc == AGG_OK)
            break;
        assert_true(n < 1000);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_webhook_has_alertmanager_v4_shape),
        cmocka_unit_test(test_render_webhook_resolved_has_end_and_same_fingerprint),
        cmocka_unit_test(test_render_webhook_fingerprint_differs_per_alert),
        cmocka_unit_test(test_render_webhook_keeps_hostile_rule_names_inside_strings),
        cmocka_unit_test(test_render_rejects_invalid_facts_naming_the_field),
        cmocka_unit_test(test_render_slack_escapes_markup_and_links_the_alert),
        cmocka_unit_test(test_render_slack_header_is_cut_on_a_character_boundary),
        cmocka_unit_test(test_render_email_first_notice_has_headers_and_facts),
        cmocka_unit_test(test_render_email_follow_up_threads_on_first_message),
        cmocka_unit_test(test_render_email_header_injection_is_neutralised),
        cmocka_unit_test(test_render_email_non_ascii_subject_is_rfc2047_encoded),
        cmocka_unit_test(test_render_email_rejects_bad_addresses_and_ids),
        cmocka_unit_test(test_render_email_breaks_very_long_lines),
        cmocka_unit_test(test_render_survives_allocation_failures),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
