/*
 * The benchmark job of docs/performance.md on Sendmail's libmilter (C), to
 * compare runtimes on the same work: refuse a message unless
 * "-----BEGIN PGP MESSAGE-----" lies within the first 5000 bytes of its
 * body; add one header when accepting; skip the rest of the body once
 * decided. The same rule as crates/minimilter/examples/pgp_gate_milter.rs.
 *
 *   cc -O2 -o target/bench/pgp_gate_libmilter scripts/bench/pgp_gate_libmilter.c -lmilter -lpthread
 *   pgp_gate_libmilter unix:/path/to/socket
 *
 * At negotiation it declines every step but body and end of message
 * (SMFIP_NO*), asks for SKIP and the add-header action, as the other
 * implementations do.
 */
#define _GNU_SOURCE
#include <libmilter/mfapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define WINDOW 5000
static const char MARKER[] = "-----BEGIN PGP MESSAGE-----";
#define MLEN (sizeof MARKER - 1)

struct gate {
    size_t seen;
    size_t tail_len;
    unsigned char tail[MLEN];
    int decided; /* 0 undecided, 1 accept, -1 refuse */
};

static int contains(const unsigned char *h, size_t n)
{
    return n >= MLEN && memmem(h, n, MARKER, MLEN) != NULL;
}

/* Looks at the part of a chunk inside the window; true once decided. */
static int look(struct gate *g, const unsigned char *chunk, size_t len)
{
    size_t take = len < WINDOW - g->seen ? len : WINDOW - g->seen;
    int found;
    if (g->tail_len == 0) {
        found = contains(chunk, take);
    } else {
        /* The marker may straddle the previous chunk and this one. */
        unsigned char joined[2 * MLEN];
        size_t head = take < MLEN - 1 ? take : MLEN - 1;
        memcpy(joined, g->tail, g->tail_len);
        memcpy(joined + g->tail_len, chunk, head);
        found = contains(joined, g->tail_len + head) || contains(chunk, take);
        g->tail_len = 0;
    }
    g->seen += take;
    if (found)
        g->decided = 1;
    else if (g->seen >= WINDOW)
        g->decided = -1;
    else {
        size_t keep = take < MLEN - 1 ? take : MLEN - 1;
        memcpy(g->tail, chunk + take - keep, keep);
        g->tail_len = keep;
    }
    return g->decided != 0;
}

static struct gate *gate_of(SMFICTX *ctx)
{
    struct gate *g = smfi_getpriv(ctx);
    if (!g) {
        g = calloc(1, sizeof *g);
        smfi_setpriv(ctx, g);
    }
    return g;
}

static sfsistat negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                          unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                          unsigned long *pf2, unsigned long *pf3)
{
    (void)ctx; (void)f0; (void)f2; (void)f3;
    unsigned long no = SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT
        | SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NODATA;
    *pf0 = SMFIF_ADDHDRS & f0;
    *pf1 = (no | SMFIP_SKIP) & f1;
    *pf2 = 0;
    *pf3 = 0;
    return SMFIS_CONTINUE;
}

static sfsistat body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    struct gate *g = gate_of(ctx);
    if (!g)
        return SMFIS_TEMPFAIL;
    return g->decided || look(g, chunk, len) ? SMFIS_SKIP : SMFIS_CONTINUE;
}

static void reset(SMFICTX *ctx)
{
    struct gate *g = smfi_getpriv(ctx);
    if (g)
        memset(g, 0, sizeof *g);
}

static sfsistat eom(SMFICTX *ctx)
{
    struct gate *g = gate_of(ctx);
    int accept = g && g->decided == 1;
    reset(ctx);
    if (accept)
        return smfi_addheader(ctx, "X-PGP-Gate", "encrypted") == MI_SUCCESS ? SMFIS_CONTINUE
                                                                             : SMFIS_TEMPFAIL;
    smfi_setreply(ctx, "550", "5.7.1", "Only PGP-encrypted mail is accepted here");
    return SMFIS_REJECT;
}

static sfsistat abort_msg(SMFICTX *ctx)
{
    reset(ctx);
    return SMFIS_CONTINUE;
}

static sfsistat close_conn(SMFICTX *ctx)
{
    free(smfi_getpriv(ctx));
    smfi_setpriv(ctx, NULL);
    return SMFIS_CONTINUE;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: pgp_gate_libmilter unix:/path/to/socket\n");
        return 2;
    }
    struct smfiDesc desc = {
        .xxfi_name = "pgp_gate",
        .xxfi_version = SMFI_VERSION,
        .xxfi_flags = SMFIF_ADDHDRS,
        .xxfi_body = body,
        .xxfi_eom = eom,
        .xxfi_abort = abort_msg,
        .xxfi_close = close_conn,
        .xxfi_negotiate = negotiate,
    };
    umask(0);
    if (smfi_setconn(argv[1]) != MI_SUCCESS || smfi_register(desc) != MI_SUCCESS) {
        fprintf(stderr, "pgp_gate_libmilter: cannot set up\n");
        return 1;
    }
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
