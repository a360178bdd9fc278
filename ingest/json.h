/*
 * ingest/json.h — JSON event decoders: NDJSON bodies, JSON documents (one object, an
 *                 array of objects, OTLP/HTTP JSON logs) and raw TCP JSON lines.
 *
 * Place: HTTP body / TCP line -> [json] -> record -> sink (pipeline).
 * Threads: a decoder belongs to one thread at a time (the event loop); decoders on
 *          different threads share nothing.
 * Ownership: the decoder owns its yajl handles and scratch buffers; records handed
 *            to the sink point into the input or into that scratch, valid for the
 *            one sink call. Keeps no pointer into the input after return.
 * Not here: the OTLP walk behind ing_json_decode_document (ingest/otlp.c),
 *           decompression (ingest/decompress.h), HTTP status codes (core/http.c),
 *           the mapping table and its rationale (docs/json-mapping.md).
 */
#ifndef AGGD_INGEST_JSON_H
#define AGGD_INGEST_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "core/record.h"
#include "core/err.h"

/* Deepest nesting inside one event (an event's own object is level 1). Deeper
 * events are rejected. */
#define ING_JSON_MAX_EVENT_DEPTH 64
/* Deepest nesting of a whole body; a document nested deeper is not accepted. */
#define ING_JSON_MAX_DEPTH 512

struct ing_json; /* opaque */

/* What one decode call did. Set (not accumulated) by every call. */
struct ing_json_stats {
    size_t accepted; /* events the sink took (emit returned AGG_OK) */
    size_t rejected; /* events handed to sink->reject */
    size_t oversized; /* of those, events over max_event_bytes */
};

/* A decoder for events of at most <max_event_bytes> bytes each (the raw line, or the
 * re-serialized element), which must be > 0. Allocates all it needs for such events
 * up front, so decoding them allocates nothing in steady state.
 * Caller owns the result: ing_json_free(). NULL + <err> on failure. */
struct ing_json *ing_json_new(size_t max_event_bytes, struct agg_err *err);

/* Frees <j> and all it owns; NULL is allowed. */
void ing_json_free(struct ing_json *j);

/* Decodes <body>[<len>] as newline-delimited JSON: one object per line (LF or CRLF),
 * blank lines skipped and not counted; a UTF-8 BOM at the start is skipped. Each good
 * line is passed to sink->emit, each bad one (not JSON, not an object, a field of the
 * wrong type, longer than max_event_bytes) to sink->reject with its index among the
 * non-blank lines; the other lines are unaffected.
 * Returns AGG_OK; AGG_EFULL as soon as emit returns it (or any other error emit
 * returns), AGG_ENOMEM: the decoding stops there and <stats> say how far it got.
 * Borrows <body>, <sink> and <stats> for the call. */
int ing_json_decode_ndjson(struct ing_json *j, const char *body, size_t len,
                           const struct agg_sink *sink, struct ing_json_stats *stats,
                           struct agg_err *err);

/* Decodes <body>[<len>] as one application/json document: an object (one event,
 * index 0), an array (element i is event i; a non-object element is rejected), or an
 * OTLP/HTTP JSON logs document (a top-level key "resourceLogs": each logRecord is one
 * event, indexed in document order). The whole body is checked before any event is
 * emitted: a body that is not JSON (syntax, invalid UTF-8, nested deeper than
 * ING_JSON_MAX_DEPTH) gives AGG_EINVAL and an <err> naming the byte offset; an OTLP
 * document whose containers have the wrong shape gives AGG_EINVAL and an <err> naming
 * the path; either way nothing reaches the sink. Bad events are
 * rejected one by one as in ing_json_decode_ndjson; each rejected event's raw bytes
 * are its re-serialization (truncated to max_event_bytes).
 * Returns AGG_OK, AGG_EINVAL, AGG_EFULL (or another error emit returned), AGG_ENOMEM.
 * Borrows <body>, <sink> and <stats> for the call. */
int ing_json_decode_document(struct ing_json *j, const char *body, size_t len,
                             const struct agg_sink *sink, struct ing_json_stats *stats,
                             struct agg_err *err);

/* Decodes one line of the raw TCP JSON-lines listener (a trailing CR and/or LF is
 * ignored) as event <index>. Returns AGG_OK when it was emitted or the line is blank;
 * AGG_EINVAL + <err> (the reason) when it was rejected — sink->reject has already had
 * it, <err> is for the caller's counters; AGG_EFULL (or another error emit returned),
 * AGG_ENOMEM. Borrows <line> and <sink> for the call. */
int ing_json_decode_line(struct ing_json *j, const char *line, size_t len, size_t index,
                         const struct agg_sink *sink, struct agg_err *err);

struct agg_buf; /* core/buf.h */

/* Decodes <obj>[<len>], one JSON object carried by another format (the MSG of a
 * syslog message), as one event laid over <base>: the object's members set columns
 * and extra_data exactly as ing_json_decode_line does; each column the object leaves
 * unset keeps <base>'s value, except message ("" as in JSON ingest); <base>->extra, a
 * JSON object, is merged into extra_data after the object's own members (jsonb keeps
 * the last of a repeated key: <base>'s); raw is <base>->raw. The merged extra_data is
 * written into <extra_out> (reset first). The record goes to sink->emit; sink->reject
 * is never called. Returns AGG_OK when emitted; AGG_EINVAL + <err> (the reason) when
 * <obj> is not one JSON object or a member has a type its column refuses: nothing
 * was emitted and the caller keeps the text; AGG_EFULL (or what emit returned) or
 * AGG_ENOMEM. Borrows <obj>, <base>, <extra_out> and <sink> for the call. */
int ing_json_decode_over(struct ing_json *j, const char *obj, size_t len,
                         const struct agg_record *base, struct agg_buf *extra_out,
                         const struct agg_sink *sink, struct agg_err *err);

/* Invariant validator for tests: between calls no memory is lent to yajl beyond the
 * decoder's own generators, and yajl never needed memory the decoder had not
 * reserved. */
bool ing_json_check(const struct ing_json *j);

#endif
