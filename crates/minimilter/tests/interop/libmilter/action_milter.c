/*
 * action_milter.c -- the interop milter minimilter::interop::ActionMilter
 * (crates/minimilter/src/interop.rs, served by examples/action_milter.rs),
 * written against Sendmail's libmilter.
 *
 * The Rust milter and this program implement the same filter, so a test script
 * (miltertest, an MTA) can be run against both: libmilter is the reference for
 * what a milter says on the wire, minimilter must say the same.
 *
 * The filter performs, at end of message, whatever the message asks for in
 * `X-Action:` headers (one action per header, words separated by white space):
 *
 *   add-header NAME VALUE...            append a header
 *   insert-header INDEX NAME VALUE...   insert a header at INDEX
 *   change-header NAME INDEX VALUE...   change the INDEX-th NAME header
 *                                       (an empty VALUE becomes " ": empty means delete)
 *   delete-header NAME INDEX            delete the INDEX-th NAME header
 *   add-rcpt ADDR                       add an envelope recipient
 *   add-rcpt-par ADDR ARGS...           ... with ESMTP arguments
 *   del-rcpt ADDR                       remove an envelope recipient
 *   chgfrom ADDR [ARGS...]              change the envelope sender
 *   replace-body BYTES                  replace the body with BYTES bytes of text lines
 *                                       (only the last replace-body counts)
 *   quarantine REASON...                hold the message
 *   skip-body                           answer the first body chunk with "skip"
 *   slow MILLISECONDS                   take this long at end of message, sending
 *                                       progress packets meanwhile
 *   reject CODE X.Y.Z LINE|LINE...      refuse with a (multi-line) reply
 *   tempfail CODE X.Y.Z LINE|LINE...    the same with a 4xx code
 *   discard / accept                    the verdict (the last verdict action wins)
 *
 * Every delivered message also gets `X-Action-Body-Bytes: N`, the body size seen.
 *
 * Behaviour copied from the minimilter runtime so that both look the same to an MTA:
 *   - A malformed action, a reply minimilter's SmtpReply would refuse, or a
 *     modification that was not negotiated makes the filter fail: the answer is
 *     the fail-safe "451 4.3.0 Temporary failure in mail filter, try again later"
 *     and no modification is sent. Everything is therefore checked before the
 *     first modification goes out (libmilter sends each one at once).
 *   - Modifications are sent only with a delivering verdict (continue, accept).
 *   - `%` in reply texts is doubled (Sendmail reads the text as a format string).
 *
 * Known differences that libmilter's API makes unavoidable (tests avoid them):
 *   - an empty line in a multi-line reply gets a trailing space ("550-5.7.1 ");
 *   - `quarantine` without a reason fails here (smfi_quarantine refuses it);
 *   - indexes above INT_MAX are refused (libmilter takes an int).
 *
 * Usage: action_milter -p SOCKET [-n] [-P PROGRESS_MS] [-d DEBUGLEVEL]
 *   -p SOCKET   libmilter socket spec: unix:/path/to/sock or inet:PORT@127.0.0.1
 *   -n          ask for "no reply" (SMFIP_NR_*) at connect, HELO, MAIL, DATA,
 *               unknown, header and end of header
 *   -P MS       progress interval while `slow` runs (default 60000, like minimilter)
 *   -d LEVEL    libmilter debug level (smfi_setdbg)
 *
 * Build: cc -o action_milter action_milter.c -lmilter -lpthread
 * The socket is created with umask 0, so an MTA running as another user
 * (Postfix's smtpd runs as "postfix") can connect to it.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

/* ---------------------------------------------------------------------------
 * Settings and limits
 * ------------------------------------------------------------------------- */

/* Set once in main(), read-only afterwards (callbacks run in many threads). */
static int want_no_reply = 0;              /* -n */
static unsigned long progress_ms = 60000;  /* -P */

/* Reply rules of minimilter's SmtpReply (milter-proto/src/reply.rs). */
#define MAX_REPLY_LINES 32
#define MAX_REPLY_LINE_LEN 980

/* Replacement bodies go to libmilter in pieces of this size (MILTER_CHUNK_SIZE),
 * which is also how large each replace-body packet is on the wire. */
#define BODY_CHUNK 65535

/* Everything this filter may do, i.e. all actions except SMFIF_SETSYMLIST. */
#define ALL_ACTIONS                                                            \
    (SMFIF_ADDHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT | SMFIF_DELRCPT |           \
     SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_CHGFROM | SMFIF_ADDRCPT_PAR)

/* The steps whose reply -n gives up. */
#define NO_REPLY_STEPS                                                         \
    (SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_DATA |           \
     SMFIP_NR_UNKN | SMFIP_NR_HDR | SMFIP_NR_EOH)

#define FAIL_SAFE_CODE "451"
#define FAIL_SAFE_XCODE "4.3.0"
#define FAIL_SAFE_TEXT "Temporary failure in mail filter, try again later"

static const char BODY_LINE[] =
    "The quick brown fox jumps over the lazy dog. 0123456789\r\n";

/* ---------------------------------------------------------------------------
 * Per-connection state (smfi_setpriv)
 * ------------------------------------------------------------------------- */

struct message {
    char **actions;         /* X-Action values, trimmed, in order */
    size_t n_actions;
    size_t cap_actions;
    unsigned long long body_bytes;
};

struct conn {
    unsigned long id;       /* for the log */
    unsigned long actions;  /* SMFIF_* granted at negotiation */
    unsigned long protocol; /* SMFIP_* in force */
    struct message msg;
};

static unsigned long next_conn_id = 0;

static void logf_(struct conn *c, const char *fmt, ...)
{
    va_list ap;
    char line[2048];

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "action_milter[conn %lu]: %s\n", c != NULL ? c->id : 0UL,
            line);
    fflush(stderr);
}

static void message_reset(struct message *m)
{
    size_t i;

    for (i = 0; i < m->n_actions; i++)
        free(m->actions[i]);
    free(m->actions);
    memset(m, 0, sizeof *m);
}

/* The connection's state, created on first use. */
static struct conn *conn_of(SMFICTX *ctx)
{
    struct conn *c = smfi_getpriv(ctx);

    if (c == NULL) {
        c = calloc(1, sizeof *c);
        if (c == NULL)
            return NULL;
        c->id = __sync_add_and_fetch(&next_conn_id, 1);
        smfi_setpriv(ctx, c);
    }
    return c;
}

/* The answer for a step the filter has no opinion on: nothing if the MTA was
 * told not to wait for one (bit granted at negotiation), "continue" otherwise. */
static sfsistat pass(SMFICTX *ctx, unsigned long nr_bit)
{
    struct conn *c = conn_of(ctx);

    if (c != NULL && (c->protocol & nr_bit) != 0)
        return SMFIS_NOREPLY;
    return SMFIS_CONTINUE;
}

/* ---------------------------------------------------------------------------
 * Words
 * ------------------------------------------------------------------------- */

struct words {
    char **w;
    size_t n;
};

static int is_space(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' ||
           ch == '\f';
}

static void words_free(struct words *ws)
{
    size_t i;

    for (i = 0; i < ws->n; i++)
        free(ws->w[i]);
    free(ws->w);
    ws->w = NULL;
    ws->n = 0;
}

/* Splits at runs of white space. Returns -1 when out of memory. */
static int words_split(const char *s, struct words *ws)
{
    size_t cap = 0;

    ws->w = NULL;
    ws->n = 0;
    for (;;) {
        const char *start;

        while (*s != '\0' && is_space((unsigned char)*s))
            s++;
        if (*s == '\0')
            return 0;
        start = s;
        while (*s != '\0' && !is_space((unsigned char)*s))
            s++;
        if (ws->n == cap) {
            size_t ncap = cap == 0 ? 8 : cap * 2;
            char **nw = realloc(ws->w, ncap * sizeof *nw);
            if (nw == NULL)
                goto oom;
            ws->w = nw;
            cap = ncap;
        }
        ws->w[ws->n] = strndup(start, (size_t)(s - start));
        if (ws->w[ws->n] == NULL)
            goto oom;
        ws->n++;
    }
oom:
    words_free(ws);
    return -1;
}

/* Words from..end joined with single spaces ("" if none); NULL when out of memory. */
static char *words_join(const struct words *ws, size_t from)
{
    size_t len = 1, i;
    char *out;

    for (i = from; i < ws->n; i++)
        len += strlen(ws->w[i]) + 1;
    out = malloc(len);
    if (out == NULL)
        return NULL;
    out[0] = '\0';
    for (i = from; i < ws->n; i++) {
        if (i > from)
            strcat(out, " ");
        strcat(out, ws->w[i]);
    }
    return out;
}

/* A decimal u32, as Rust's str::parse::<u32> reads it ('+' allowed). */
static int parse_u32(const char *s, unsigned long *out)
{
    unsigned long v = 0;

    if (*s == '+')
        s++;
    if (*s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > UINT32_MAX)
            return -1;
    }
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Actions
 * ------------------------------------------------------------------------- */

enum kind {
    A_IGNORED,
    A_ADD_HEADER,
    A_INSERT_HEADER,
    A_CHANGE_HEADER,
    A_DELETE_HEADER,
    A_ADD_RCPT,
    A_ADD_RCPT_PAR,
    A_DEL_RCPT,
    A_CHGFROM,
    A_REPLACE_BODY,
    A_QUARANTINE,
    A_SLOW,
    A_REJECT,
    A_TEMPFAIL,
    A_DISCARD,
    A_ACCEPT
};

/* A reply text, checked and split into lines ('%' already doubled). */
struct reply {
    char code[4];
    char *xcode;            /* NULL: none */
    char *lines[MAX_REPLY_LINES + 1]; /* NULL-terminated */
    size_t n_lines;
};

struct action {
    enum kind kind;
    char *name;             /* header name */
    char *text;             /* header value, address, reason */
    char *args;             /* ESMTP arguments; NULL: none */
    unsigned long num;      /* index, size, milliseconds */
    struct reply reply;     /* reject, tempfail */
};

static void reply_free(struct reply *r)
{
    size_t i;

    free(r->xcode);
    for (i = 0; i < r->n_lines; i++)
        free(r->lines[i]);
    memset(r, 0, sizeof *r);
}

static void action_free(struct action *a)
{
    free(a->name);
    free(a->text);
    free(a->args);
    reply_free(&a->reply);
    memset(a, 0, sizeof *a);
}

/* minimilter's header name rule: non-empty, no ':', white space or control. */
static int header_name_ok(const char *name)
{
    const unsigned char *p = (const unsigned char *)name;

    if (*p == '\0')
        return 0;
    for (; *p != '\0'; p++)
        if (*p == ':' || is_space(*p) || *p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

/* X.Y.Z whose class X is 2, 4 or 5 and equals the reply code's class. */
static int enhanced_ok(unsigned long code, const char *e)
{
    size_t part = 0, len = 0;
    const char *p;

    if (!(e[0] == '2' || e[0] == '4' || e[0] == '5') || e[1] != '.')
        return 0;
    if ((unsigned long)(e[0] - '0') != code / 100)
        return 0;
    for (p = e + 2;; p++) {
        if (*p >= '0' && *p <= '9') {
            if (++len > 3)
                return 0;
        } else if (*p == '.' || *p == '\0') {
            if (len == 0)
                return 0;
            part++;
            len = 0;
            if (*p == '\0')
                break;
            if (part > 1)
                return 0;
        } else {
            return 0;
        }
    }
    return part == 2;
}

/*
 * Parses "CODE [X.Y.Z [LINE|LINE...]]" (words[1..]) the way minimilter's
 * SmtpReply::multiline checks it. Returns 0, or -1 with *why set.
 */
static int reply_parse(const struct words *ws, struct reply *r, const char **why)
{
    unsigned long code;
    char *text, *line, *next;
    size_t prefix;

    memset(r, 0, sizeof *r);
    if (ws->n < 2) {
        *why = "missing code";
        return -1;
    }
    if (parse_u32(ws->w[1], &code) != 0 || code > 65535) {
        *why = "reply code is not a number";
        return -1;
    }
    if (code < 400 || code > 599 || (code / 10) % 10 > 5) {
        *why = "reply code is not a 4xx or 5xx SMTP code";
        return -1;
    }
    snprintf(r->code, sizeof r->code, "%lu", code);
    if (ws->n >= 3) {
        if (!enhanced_ok(code, ws->w[2])) {
            *why = "bad enhanced status code";
            return -1;
        }
        r->xcode = strdup(ws->w[2]);
        if (r->xcode == NULL)
            goto oom;
    }
    /* Without an enhanced code there are no more words, so no text either. */
    text = words_join(ws, 3);
    if (text == NULL)
        goto oom;
    prefix = 4 + (r->xcode != NULL ? strlen(r->xcode) : 0); /* "550-5.7.1" */
    for (line = text;; line = next + 1) {
        size_t len = 0, i, o;
        char *doubled;

        next = strchr(line, '|');
        if (next != NULL)
            *next = '\0';
        if (r->n_lines == MAX_REPLY_LINES) {
            free(text);
            *why = "too many reply lines";
            return -1;
        }
        for (i = 0; line[i] != '\0'; i++) {
            unsigned char ch = (unsigned char)line[i];
            if (ch < 0x20 || ch == 0x7f) {
                free(text);
                *why = "control character in reply text";
                return -1;
            }
            len += ch == '%' ? 2 : 1;
        }
        if (prefix + (len > 0 && r->xcode != NULL ? 1 : 0) + len >
            MAX_REPLY_LINE_LEN) {
            free(text);
            *why = "reply line too long";
            return -1;
        }
        doubled = malloc(len + 1);
        if (doubled == NULL) {
            free(text);
            goto oom;
        }
        for (i = 0, o = 0; line[i] != '\0'; i++) {
            if (line[i] == '%')
                doubled[o++] = '%';
            doubled[o++] = line[i];
        }
        doubled[o] = '\0';
        r->lines[r->n_lines++] = doubled;
        if (next == NULL)
            break;
    }
    free(text);
    return 0;
oom:
    *why = "out of memory";
    return -1;
}

/* Is the SMFIF_* action this kind needs granted? */
static int granted(const struct conn *c, enum kind k)
{
    unsigned long need = 0;

    switch (k) {
    case A_ADD_HEADER:
    case A_INSERT_HEADER:
        need = SMFIF_ADDHDRS;
        break;
    case A_CHANGE_HEADER:
    case A_DELETE_HEADER:
        need = SMFIF_CHGHDRS;
        break;
    case A_ADD_RCPT:
        need = SMFIF_ADDRCPT;
        break;
    case A_ADD_RCPT_PAR:
        need = SMFIF_ADDRCPT_PAR;
        break;
    case A_DEL_RCPT:
        need = SMFIF_DELRCPT;
        break;
    case A_CHGFROM:
        need = SMFIF_CHGFROM;
        break;
    case A_REPLACE_BODY:
        need = SMFIF_CHGBODY;
        break;
    case A_QUARANTINE:
        need = SMFIF_QUARANTINE;
        break;
    default:
        return 1;
    }
    return (c->actions & need) == need;
}

/*
 * Parses one X-Action value into *a. Returns 0, or -1 with *why set (the
 * message then gets the fail-safe answer, as a filter error does in minimilter).
 */
static int action_parse(const struct conn *c, const char *value,
                        struct action *a, const char **why)
{
    struct words ws;
    const char *verb;
    int rc = -1;

    memset(a, 0, sizeof *a);
    if (words_split(value, &ws) != 0) {
        *why = "out of memory";
        return -1;
    }
    verb = ws.n > 0 ? ws.w[0] : "";

#define NEED_WORD(i, what)                                                     \
    do {                                                                       \
        if (ws.n <= (i)) {                                                     \
            *why = "missing " what;                                            \
            goto out;                                                          \
        }                                                                      \
    } while (0)
#define NEED_NUM(i)                                                            \
    do {                                                                       \
        NEED_WORD(i, "number");                                                \
        if (parse_u32(ws.w[i], &a->num) != 0) {                                \
            *why = "not a number";                                             \
            goto out;                                                          \
        }                                                                      \
    } while (0)
#define DUP(dst, src)                                                          \
    do {                                                                       \
        if (((dst) = strdup(src)) == NULL) {                                   \
            *why = "out of memory";                                            \
            goto out;                                                          \
        }                                                                      \
    } while (0)
#define JOIN(dst, from)                                                        \
    do {                                                                       \
        if (((dst) = words_join(&ws, (from))) == NULL) {                       \
            *why = "out of memory";                                            \
            goto out;                                                          \
        }                                                                      \
    } while (0)

    if (strcmp(verb, "add-header") == 0) {
        a->kind = A_ADD_HEADER;
        NEED_WORD(1, "name");
        DUP(a->name, ws.w[1]);
        JOIN(a->text, 2);
    } else if (strcmp(verb, "insert-header") == 0) {
        a->kind = A_INSERT_HEADER;
        NEED_NUM(1);
        NEED_WORD(2, "name");
        DUP(a->name, ws.w[2]);
        JOIN(a->text, 3);
    } else if (strcmp(verb, "change-header") == 0) {
        a->kind = A_CHANGE_HEADER;
        NEED_WORD(1, "name");
        DUP(a->name, ws.w[1]);
        NEED_NUM(2);
        JOIN(a->text, 3);
    } else if (strcmp(verb, "delete-header") == 0) {
        a->kind = A_DELETE_HEADER;
        NEED_WORD(1, "name");
        DUP(a->name, ws.w[1]);
        NEED_NUM(2);
    } else if (strcmp(verb, "add-rcpt") == 0) {
        a->kind = A_ADD_RCPT;
        NEED_WORD(1, "address");
        DUP(a->text, ws.w[1]);
    } else if (strcmp(verb, "add-rcpt-par") == 0) {
        a->kind = A_ADD_RCPT_PAR;
        NEED_WORD(1, "address");
        DUP(a->text, ws.w[1]);
        JOIN(a->args, 2); /* may be "": sent as an empty argument string */
    } else if (strcmp(verb, "del-rcpt") == 0) {
        a->kind = A_DEL_RCPT;
        NEED_WORD(1, "address");
        DUP(a->text, ws.w[1]);
    } else if (strcmp(verb, "chgfrom") == 0) {
        a->kind = A_CHGFROM;
        NEED_WORD(1, "address");
        DUP(a->text, ws.w[1]);
        if (ws.n > 2)
            JOIN(a->args, 2);
    } else if (strcmp(verb, "replace-body") == 0) {
        a->kind = A_REPLACE_BODY;
        NEED_NUM(1);
    } else if (strcmp(verb, "quarantine") == 0) {
        a->kind = A_QUARANTINE;
        JOIN(a->text, 1);
        if (a->text[0] == '\0') {
            *why = "smfi_quarantine needs a reason";
            goto out;
        }
    } else if (strcmp(verb, "slow") == 0) {
        a->kind = A_SLOW;
        NEED_NUM(1);
    } else if (strcmp(verb, "reject") == 0 || strcmp(verb, "tempfail") == 0) {
        a->kind = verb[0] == 'r' ? A_REJECT : A_TEMPFAIL;
        if (reply_parse(&ws, &a->reply, why) != 0)
            goto out;
    } else if (strcmp(verb, "discard") == 0) {
        a->kind = A_DISCARD;
    } else if (strcmp(verb, "accept") == 0) {
        a->kind = A_ACCEPT;
    } else {
        a->kind = A_IGNORED; /* unknown words, skip-body, empty values */
    }

    if ((a->kind == A_INSERT_HEADER || a->kind == A_CHANGE_HEADER ||
         a->kind == A_DELETE_HEADER) &&
        a->num > INT_MAX) {
        *why = "header index above INT_MAX";
        goto out;
    }
    if (a->name != NULL && !header_name_ok(a->name)) {
        *why = "bad header name";
        goto out;
    }
    if (!granted(c, a->kind)) {
        *why = "modification not negotiated";
        goto out;
    }
    rc = 0;
out:
#undef NEED_WORD
#undef NEED_NUM
#undef DUP
#undef JOIN
    words_free(&ws);
    if (rc != 0)
        action_free(a);
    return rc;
}

/* Sleeps `ms` milliseconds, sending a progress packet every progress_ms. */
static void sleep_with_progress(SMFICTX *ctx, unsigned long ms)
{
    while (ms > 0) {
        unsigned long slice = ms < progress_ms ? ms : progress_ms;
        struct timespec ts;

        ts.tv_sec = (time_t)(slice / 1000);
        ts.tv_nsec = (long)(slice % 1000) * 1000000L;
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        ms -= slice;
        if (ms > 0)
            (void)smfi_progress(ctx);
    }
}

/* The replacement body: `size` bytes of BODY_LINE repeated, handed to
 * libmilter one chunk at a time so no buffer of the whole body is needed. */
static int replace_body(SMFICTX *ctx, unsigned long size)
{
    static const size_t line_len = sizeof BODY_LINE - 1;
    unsigned char *chunk;
    unsigned long done = 0;
    int rc = MI_SUCCESS;

    chunk = malloc(BODY_CHUNK);
    if (chunk == NULL)
        return MI_FAILURE;
    if (size == 0)
        rc = smfi_replacebody(ctx, chunk, 0); /* one empty chunk */
    while (rc == MI_SUCCESS && done < size) {
        size_t n = size - done < BODY_CHUNK ? (size_t)(size - done) : BODY_CHUNK;
        size_t i;

        for (i = 0; i < n; i++)
            chunk[i] = (unsigned char)BODY_LINE[(done + i) % line_len];
        rc = smfi_replacebody(ctx, chunk, (int)n);
        done += n;
    }
    free(chunk);
    return rc;
}

static sfsistat fail_safe(SMFICTX *ctx)
{
    (void)smfi_setreply(ctx, (char *)FAIL_SAFE_CODE, (char *)FAIL_SAFE_XCODE,
                        (char *)FAIL_SAFE_TEXT);
    return SMFIS_TEMPFAIL;
}

static int set_reply(SMFICTX *ctx, struct reply *r)
{
    if (r->n_lines == 1)
        return smfi_setreply(ctx, r->code, r->xcode,
                             r->lines[0][0] != '\0' ? r->lines[0] : NULL);
    /* r->lines is NULL-terminated: the arguments after the last line are ignored. */
    return smfi_setmlreply(
        ctx, r->code, r->xcode, r->lines[0], r->lines[1], r->lines[2],
        r->lines[3], r->lines[4], r->lines[5], r->lines[6], r->lines[7],
        r->lines[8], r->lines[9], r->lines[10], r->lines[11], r->lines[12],
        r->lines[13], r->lines[14], r->lines[15], r->lines[16], r->lines[17],
        r->lines[18], r->lines[19], r->lines[20], r->lines[21], r->lines[22],
        r->lines[23], r->lines[24], r->lines[25], r->lines[26], r->lines[27],
        r->lines[28], r->lines[29], r->lines[30], r->lines[31], (char *)NULL);
}

static const char *verdict_name(sfsistat v)
{
    switch (v) {
    case SMFIS_CONTINUE:
        return "continue";
    case SMFIS_ACCEPT:
        return "accept";
    case SMFIS_REJECT:
        return "reject";
    case SMFIS_TEMPFAIL:
        return "tempfail";
    case SMFIS_DISCARD:
        return "discard";
    default:
        return "?";
    }
}

/* ---------------------------------------------------------------------------
 * Callbacks
 * ------------------------------------------------------------------------- */

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                             unsigned long f2, unsigned long f3,
                             unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3)
{
    struct conn *c = conn_of(ctx);

    (void)f2;
    (void)f3;
    if (c == NULL)
        return SMFIS_REJECT; /* libmilter closes the connection */
    /* Every action offered; skip if offered; no step declined (all callbacks
     * are registered). f1 includes the SMFIP_NR_* bits libmilter can fake
     * for an MTA that lacks them. */
    c->actions = f0 & ALL_ACTIONS;
    c->protocol = f1 & SMFIP_SKIP;
    if (want_no_reply)
        c->protocol |= f1 & NO_REPLY_STEPS;
    *pf0 = c->actions;
    *pf1 = c->protocol;
    *pf2 = 0;
    *pf3 = 0;
    logf_(c, "negotiate: offered actions 0x%lx protocol 0x%lx; "
             "asked actions 0x%lx protocol 0x%lx",
          f0, f1, c->actions, c->protocol);
    return SMFIS_CONTINUE;
}

static sfsistat on_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{
    (void)addr;
    logf_(conn_of(ctx), "connect %s", host != NULL ? host : "?");
    return pass(ctx, SMFIP_NR_CONN);
}

static sfsistat on_helo(SMFICTX *ctx, char *name)
{
    logf_(conn_of(ctx), "helo %s", name);
    return pass(ctx, SMFIP_NR_HELO);
}

static sfsistat on_envfrom(SMFICTX *ctx, char **argv)
{
    struct conn *c = conn_of(ctx);

    if (c == NULL)
        return fail_safe(ctx);
    message_reset(&c->msg); /* a new message starts */
    logf_(c, "mail from %s", argv[0] != NULL ? argv[0] : "");
    return pass(ctx, SMFIP_NR_MAIL);
}

static sfsistat on_envrcpt(SMFICTX *ctx, char **argv)
{
    logf_(conn_of(ctx), "rcpt to %s", argv[0] != NULL ? argv[0] : "");
    return SMFIS_CONTINUE;
}

static sfsistat on_data(SMFICTX *ctx)
{
    return pass(ctx, SMFIP_NR_DATA);
}

static sfsistat on_unknown(SMFICTX *ctx, const char *cmd)
{
    logf_(conn_of(ctx), "unknown command %s", cmd);
    return pass(ctx, SMFIP_NR_UNKN);
}

static sfsistat on_header(SMFICTX *ctx, char *name, char *value)
{
    struct conn *c = conn_of(ctx);
    struct message *m;
    const char *start, *end;

    if (c == NULL)
        return fail_safe(ctx);
    m = &c->msg;
    if (strcasecmp(name, "X-Action") == 0) {
        start = value;
        while (*start != '\0' && is_space((unsigned char)*start))
            start++;
        end = start + strlen(start);
        while (end > start && is_space((unsigned char)end[-1]))
            end--;
        if (m->n_actions == m->cap_actions) {
            size_t ncap = m->cap_actions == 0 ? 8 : m->cap_actions * 2;
            char **na = realloc(m->actions, ncap * sizeof *na);
            if (na == NULL)
                return fail_safe(ctx);
            m->actions = na;
            m->cap_actions = ncap;
        }
        m->actions[m->n_actions] = strndup(start, (size_t)(end - start));
        if (m->actions[m->n_actions] == NULL)
            return fail_safe(ctx);
        m->n_actions++;
    }
    return pass(ctx, SMFIP_NR_HDR);
}

static sfsistat on_eoh(SMFICTX *ctx)
{
    return pass(ctx, SMFIP_NR_EOH);
}

static sfsistat on_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    struct conn *c = conn_of(ctx);
    size_t i;

    (void)chunk;
    if (c == NULL)
        return fail_safe(ctx);
    c->msg.body_bytes += len;
    for (i = 0; i < c->msg.n_actions; i++) {
        /* Skip only if the MTA understands it; otherwise keep reading. */
        if (strcmp(c->msg.actions[i], "skip-body") == 0 &&
            (c->protocol & SMFIP_SKIP) != 0)
            return SMFIS_SKIP;
    }
    return SMFIS_CONTINUE;
}

static sfsistat on_eom(SMFICTX *ctx)
{
    struct conn *c = conn_of(ctx);
    struct action *acts = NULL;
    struct reply *reply = NULL;
    sfsistat verdict = SMFIS_CONTINUE;
    size_t n, i, last_body = (size_t)-1;
    const char *why = NULL;
    int delivering, rc = MI_SUCCESS;
    char bytes[32];

    if (c == NULL)
        return fail_safe(ctx);
    n = c->msg.n_actions;
    acts = calloc(n > 0 ? n : 1, sizeof *acts);
    if (acts == NULL) {
        message_reset(&c->msg);
        return fail_safe(ctx);
    }

    /* 1. Check everything and find the verdict before anything is sent. */
    for (i = 0; i < n; i++) {
        if (action_parse(c, c->msg.actions[i], &acts[i], &why) != 0) {
            logf_(c, "action \"%s\": %s; answering with the fail-safe reply",
                  c->msg.actions[i], why);
            verdict = fail_safe(ctx);
            goto done;
        }
        switch (acts[i].kind) {
        case A_REJECT:
            verdict = SMFIS_REJECT;
            reply = &acts[i].reply;
            break;
        case A_TEMPFAIL:
            verdict = SMFIS_TEMPFAIL;
            reply = &acts[i].reply;
            break;
        case A_DISCARD:
            verdict = SMFIS_DISCARD;
            reply = NULL;
            break;
        case A_ACCEPT:
            verdict = SMFIS_ACCEPT;
            reply = NULL;
            break;
        case A_REPLACE_BODY:
            last_body = i;
            break;
        default:
            break;
        }
    }
    if ((c->actions & SMFIF_ADDHDRS) == 0) {
        /* X-Action-Body-Bytes cannot be added: a filter error in minimilter. */
        logf_(c, "add-header not negotiated; answering with the fail-safe reply");
        verdict = fail_safe(ctx);
        goto done;
    }
    delivering = verdict == SMFIS_CONTINUE || verdict == SMFIS_ACCEPT;

    /* 2. Perform the actions in order. */
    for (i = 0; i < n && rc == MI_SUCCESS; i++) {
        struct action *a = &acts[i];

        if (a->kind == A_SLOW) {
            logf_(c, "slow %lu ms", a->num);
            sleep_with_progress(ctx, a->num);
            continue;
        }
        if (!delivering)
            continue;
        switch (a->kind) {
        case A_ADD_HEADER:
            rc = smfi_addheader(ctx, a->name, a->text);
            break;
        case A_INSERT_HEADER:
            rc = smfi_insheader(ctx, (int)a->num, a->name, a->text);
            break;
        case A_CHANGE_HEADER:
            /* An empty value would delete the header: change to " " instead. */
            rc = smfi_chgheader(ctx, a->name, (int)a->num,
                                a->text[0] != '\0' ? a->text : (char *)" ");
            break;
        case A_DELETE_HEADER:
            rc = smfi_chgheader(ctx, a->name, (int)a->num, NULL);
            break;
        case A_ADD_RCPT:
            rc = smfi_addrcpt(ctx, a->text);
            break;
        case A_ADD_RCPT_PAR:
            rc = smfi_addrcpt_par(ctx, a->text, a->args);
            break;
        case A_DEL_RCPT:
            rc = smfi_delrcpt(ctx, a->text);
            break;
        case A_CHGFROM:
            rc = smfi_chgfrom(ctx, a->text, a->args);
            break;
        case A_REPLACE_BODY:
            if (i == last_body) /* an earlier replacement is replaced */
                rc = replace_body(ctx, a->num);
            break;
        case A_QUARANTINE:
            rc = smfi_quarantine(ctx, a->text);
            break;
        default:
            break;
        }
        if (rc != MI_SUCCESS)
            logf_(c, "action \"%s\" failed in libmilter", c->msg.actions[i]);
    }
    if (rc == MI_SUCCESS && delivering) {
        snprintf(bytes, sizeof bytes, "%llu", c->msg.body_bytes);
        rc = smfi_addheader(ctx, (char *)"X-Action-Body-Bytes", bytes);
    }
    if (rc != MI_SUCCESS) {
        /* Cannot happen after the checks above unless the MTA connection broke. */
        verdict = fail_safe(ctx);
        goto done;
    }
    if (reply != NULL && set_reply(ctx, reply) != MI_SUCCESS) {
        logf_(c, "libmilter refused the reply text");
        verdict = fail_safe(ctx);
        goto done;
    }
    logf_(c, "end of message: %zu action(s), %llu body bytes, %s", n,
          c->msg.body_bytes, verdict_name(verdict));
done:
    for (i = 0; i < n; i++)
        action_free(&acts[i]);
    free(acts);
    message_reset(&c->msg);
    return verdict;
}

static sfsistat on_abort(SMFICTX *ctx)
{
    struct conn *c = conn_of(ctx);

    if (c != NULL) {
        logf_(c, "abort");
        message_reset(&c->msg);
    }
    return SMFIS_CONTINUE;
}

static sfsistat on_close(SMFICTX *ctx)
{
    struct conn *c = smfi_getpriv(ctx);

    if (c != NULL) {
        logf_(c, "close");
        message_reset(&c->msg);
        free(c);
        smfi_setpriv(ctx, NULL);
    }
    return SMFIS_CONTINUE;
}

/* ---------------------------------------------------------------------------
 * Main
 * ------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: action_milter -p SOCKET [-n] [-P PROGRESS_MS] "
                    "[-d DEBUGLEVEL]\n"
                    "  SOCKET: unix:/path/to/sock or inet:PORT@127.0.0.1\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct smfiDesc desc;
    char *socket_spec = NULL;
    unsigned long v;
    int opt;

    while ((opt = getopt(argc, argv, "p:nP:d:")) != -1) {
        switch (opt) {
        case 'p':
            socket_spec = optarg;
            break;
        case 'n':
            want_no_reply = 1;
            break;
        case 'P':
            if (parse_u32(optarg, &v) != 0 || v == 0)
                usage();
            progress_ms = v;
            break;
        case 'd':
            if (parse_u32(optarg, &v) != 0)
                usage();
            (void)smfi_setdbg((int)v);
            break;
        default:
            usage();
        }
    }
    if (socket_spec == NULL || optind != argc)
        usage();

    memset(&desc, 0, sizeof desc);
    desc.xxfi_name = (char *)"action_milter";
    desc.xxfi_version = SMFI_VERSION;
    desc.xxfi_flags = ALL_ACTIONS; /* superseded by on_negotiate */
    desc.xxfi_connect = on_connect;
    desc.xxfi_helo = on_helo;
    desc.xxfi_envfrom = on_envfrom;
    desc.xxfi_envrcpt = on_envrcpt;
    desc.xxfi_header = on_header;
    desc.xxfi_eoh = on_eoh;
    desc.xxfi_body = on_body;
    desc.xxfi_eom = on_eom;
    desc.xxfi_abort = on_abort;
    desc.xxfi_close = on_close;
    desc.xxfi_unknown = on_unknown;
    desc.xxfi_data = on_data;
    desc.xxfi_negotiate = on_negotiate;

    if (smfi_setconn(socket_spec) != MI_SUCCESS) {
        fprintf(stderr, "action_milter: bad socket %s\n", socket_spec);
        return 1;
    }
    if (smfi_register(desc) != MI_SUCCESS) {
        fprintf(stderr, "action_milter: smfi_register failed\n");
        return 1;
    }
    /* Socket mode 0777 (0666 for the file's use): any local user may connect. */
    umask(0);
    /* Open now (removing a stale socket file) so that errors show before main. */
    if (smfi_opensocket(true) != MI_SUCCESS) {
        fprintf(stderr, "action_milter: cannot open socket %s\n", socket_spec);
        return 1;
    }
    fprintf(stderr, "action_milter: listening on %s%s\n", socket_spec,
            want_no_reply ? " (no-reply steps)" : "");
    fflush(stderr);
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
