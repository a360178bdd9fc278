/*
 * rules/lifecycle.h — the per-rule alert state machine: ok → pending → firing →
 * recovering → ok, damped by for_seconds and keep_firing_seconds.
 *
 * Place: the evaluator (rules/engine.c) feeds it one breach/clear verdict per rule and
 *        tick, and carries out the action it answers (DESIGN.md, Rules).
 * Threads: pure; callable from any thread.
 * Ownership: plain values only.
 * Traps: a step never mutates the state it is given: the engine applies the answer only
 *        once the database has what the step implies (an alert row, a resolve), so a
 *        failed write is simply tried again at the next tick.
 * Not here: the database side (rules/alerts.c), escalation (rules/escalate.c).
 */
#ifndef AGGD_RULES_LIFECYCLE_H
#define AGGD_RULES_LIFECYCLE_H

#include <stdbool.h>
#include <stdint.h>

enum rl_state {
    RL_STATE_OK = 0,
    RL_STATE_PENDING,
    RL_STATE_FIRING,
    RL_STATE_RECOVERING,
};
#define RL_STATE_COUNT 4

/* What the engine must do to make a step true. */
enum rl_action {
    RL_ACTION_NONE = 0, /* nothing changes */
    RL_ACTION_PERSIST,  /* a new state only (no alert row changes, nothing sent) */
    RL_ACTION_FIRE,     /* open an alert and notify the rule's channels */
    RL_ACTION_RESOLVE,  /* resolve the open alert (auto) and send resolved notices */
};

struct rl_lifecycle {
    enum rl_state state;
    int64_t since_us; /* when <state> was entered */
};

struct rl_lifecycle_rule {
    int64_t for_us;        /* breach held this long before firing (0: at once) */
    int64_t keep_firing_us; /* clear held this long before resolving (0: at once) */
};

/* The next state of <cur> given whether the rule is in breach at <now_us>, into <next>
 * (since_us = <now_us> when the state changes, else unchanged), and the action that
 * gets there. A clock that went backwards counts as no time elapsed. */
enum rl_action rl_lifecycle_step(const struct rl_lifecycle *cur,
                                 const struct rl_lifecycle_rule *rule, bool breach,
                                 int64_t now_us, struct rl_lifecycle *next);

/* "ok", "pending", "firing", "recovering". */
const char *rl_state_name(enum rl_state s);

/* Parses a name of rl_state_name(); false for anything else. */
bool rl_state_parse(const char *name, enum rl_state *out);

/* Whether an alert row is open in <s> (firing or recovering). */
bool rl_state_has_alert(enum rl_state s);

#endif
