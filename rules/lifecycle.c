/*
 * rules/lifecycle.c — the per-rule alert state machine.
 *
 * Place: see rules/lifecycle.h.
 * Threads: pure.
 */
#include "rules/lifecycle.h"

#include <string.h>

static const char *const state_names[RL_STATE_COUNT] = {"ok", "pending", "firing",
                                                        "recovering"};

static bool held(const struct rl_lifecycle *cur, int64_t now_us, int64_t need_us)
{
    int64_t elapsed = now_us - cur->since_us;

    return (elapsed < 0 ? 0 : elapsed) >= need_us;
}

static enum rl_action go(struct rl_lifecycle *next, enum rl_state to, int64_t now_us,
                         enum rl_action action)
{
    next->state = to;
    next->since_us = now_us;
    return action;
}

enum rl_action rl_lifecycle_step(const struct rl_lifecycle *cur,
                                 const struct rl_lifecycle_rule *rule, bool breach,
                                 int64_t now_us, struct rl_lifecycle *next)
{
    *next = *cur;
    switch (cur->state) {
    case RL_STATE_OK:
        if (!breach)
            return RL_ACTION_NONE;
        if (rule->for_us <= 0)
            return go(next, RL_STATE_FIRING, now_us, RL_ACTION_FIRE);
        return go(next, RL_STATE_PENDING, now_us, RL_ACTION_PERSIST);
    case RL_STATE_PENDING:
        if (!breach)
            return go(next, RL_STATE_OK, now_us, RL_ACTION_PERSIST);
        if (held(cur, now_us, rule->for_us))
            return go(next, RL_STATE_FIRING, now_us, RL_ACTION_FIRE);
        return RL_ACTION_NONE;
    case RL_STATE_FIRING:
        if (breach)
            return RL_ACTION_NONE;
        if (rule->keep_firing_us <= 0)
            return go(next, RL_STATE_OK, now_us, RL_ACTION_RESOLVE);
        return go(next, RL_STATE_RECOVERING, now_us, RL_ACTION_PERSIST);
    case RL_STATE_RECOVERING:
        if (breach) /* flap damping: the same alert, nothing sent */
            return go(next, RL_STATE_FIRING, now_us, RL_ACTION_PERSIST);
        if (held(cur, now_us, rule->keep_firing_us))
            return go(next, RL_STATE_OK, now_us, RL_ACTION_RESOLVE);
        return RL_ACTION_NONE;
    }
    return RL_ACTION_NONE;
}

const char *rl_state_name(enum rl_state s)
{
    return (unsigned)s < RL_STATE_COUNT ? state_names[s] : "unknown";
}

bool rl_state_parse(const char *name, enum rl_state *out)
{
    for (int i = 0; i < RL_STATE_COUNT; i++) {
        if (strcmp(name, state_names[i]) == 0) {
            *out = (enum rl_state)i;
            return true;
        }
    }
    return false;
}

bool rl_state_has_alert(enum rl_state s)
{
    return s == RL_STATE_FIRING || s == RL_STATE_RECOVERING;
}
