/*
 * Differential-test harness for Xen's public io/ring.h.
 *
 * Drives one front ring and one back ring, both attached to the same shared ring, with the
 * macros of <xen/io/ring.h> exactly as a PV frontend/backend pair would, and prints one line per
 * operation read from stdin. test/interop/ring-h/ring-h.test.ts runs the same script on the
 * TypeScript FrontRing/BackRing and compares the lines.
 *
 * Build: cc -std=gnu11 -O1 -Wall -Wextra -Werror -DREQ_BYTES=112 -DRSP_BYTES=16 harness.c -o harness
 *
 * Script (one operation per line, integers in decimal, deltas signed and taken mod 2^32):
 *   layout                 sizes and offsets of the generated types, ring entries for orders 0..4
 *   init ORDER START       fresh 2^ORDER-page ring, shared words at START (events START+1),
 *                          FRONT_RING_ATTACH and BACK_RING_ATTACH at START
 *   push_req N             front: write up to N requests while !RING_FULL
 *   push_req_notify        front: RING_PUSH_REQUESTS_AND_CHECK_NOTIFY
 *   push_req_nonotify      front: RING_PUSH_REQUESTS
 *   consume_req N          back: take up to N requests (XEN_RING_NR_UNCONSUMED_REQUESTS,
 *                          RING_REQUEST_CONS_OVERFLOW, RING_COPY_REQUEST)
 *   push_rsp N             back: answer up to N consumed requests
 *   push_rsp_notify        back: RING_PUSH_RESPONSES_AND_CHECK_NOTIFY
 *   push_rsp_nonotify      back: RING_PUSH_RESPONSES
 *   final_req              back: RING_FINAL_CHECK_FOR_REQUESTS
 *   final_rsp              front: RING_FINAL_CHECK_FOR_RESPONSES
 *   consume_rsp N          front: take up to N responses (RING_RESPONSE_PROD_OVERFLOW,
 *                          XEN_RING_NR_UNCONSUMED_RESPONSES, RING_COPY_RESPONSE)
 *   query                  RING_SIZE, RING_FREE_REQUESTS, RING_FULL, both unconsumed counts
 *   req_prod_ovf D         RING_REQUEST_PROD_OVERFLOW(back, P = rsp_prod_pvt + D) and, when
 *                          false, XEN_RING_NR_UNCONSUMED_REQUESTS had the frontend published P
 *   rsp_prod_ovf D         RING_RESPONSE_PROD_OVERFLOW(front, P = rsp_cons + D) (as c.macro),
 *                          the tighter "more responses than requests outstanding" check, and,
 *                          when not tight, XEN_RING_NR_UNCONSUMED_RESPONSES had the backend
 *                          published P
 *   req_cons_ovf D         RING_REQUEST_CONS_OVERFLOW(back, req_cons + D)
 *   set_req_event D        back sets req_event = req_cons + D (a custom FINAL_CHECK)
 *   set_rsp_event D        front sets rsp_event = rsp_cons + D
 *
 * Output: "<op> key=value ... hdr=REQ_PROD,REQ_EVENT,RSP_PROD,RSP_EVENT f=REQ_PROD_PVT,RSP_CONS
 * b=RSP_PROD_PVT,REQ_CONS". Keys starting with "c." are C-only facts that the test checks
 * separately. A malformed line prints "error ..." and exits with status 2.
 */
#define __XEN_INTERFACE_VERSION__ 0x00040e00
#define xen_mb() __sync_synchronize()
#define xen_rmb() __sync_synchronize()
#define xen_wmb() __sync_synchronize()

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xen/io/ring.h>

#ifndef REQ_BYTES
#define REQ_BYTES 112
#endif
#ifndef RSP_BYTES
#define RSP_BYTES 16
#endif
#if REQ_BYTES < 8 || RSP_BYTES < 8 || REQ_BYTES % 4 != 0 || RSP_BYTES % 4 != 0
#error "REQ_BYTES and RSP_BYTES must be multiples of 4, at least 8"
#endif

#define PAGE_BYTES 4096u
#define ORDER_MAX 4

/* A 32-bit id (the free-running index it was written at) and a byte pattern derived from it. */
struct t_request {
    uint32_t id;
    uint8_t body[REQ_BYTES - 4];
};
struct t_response {
    uint32_t id;
    uint8_t body[RSP_BYTES - 4];
};

DEFINE_RING_TYPES(t, struct t_request, struct t_response);

static t_sring_t *sring;
/* Header-only stand-in for "what if the peer had published this producer index". */
static t_sring_t probe_sring;
static t_front_ring_t front;
static t_back_ring_t back;

/* The patterns the TS side writes and checks too. */
static uint8_t req_byte(uint32_t idx, unsigned j) { return (uint8_t)((idx ^ (j * 37u)) + (idx >> 8)); }
static uint8_t rsp_byte(uint32_t idx, unsigned j) { return (uint8_t)(idx * 3u + j + (idx >> 16)); }

static void fail(const char *what, const char *line)
{
    printf("error %s: %s\n", what, line);
    fflush(stdout);
    exit(2);
}

static void print_state(void)
{
    printf(" hdr=%u,%u,%u,%u f=%u,%u b=%u,%u\n", sring->req_prod, sring->req_event, sring->rsp_prod,
           sring->rsp_event, front.req_prod_pvt, front.rsp_cons, back.rsp_prod_pvt, back.req_cons);
}

static void do_layout(void)
{
    printf("layout req=%zu rsp=%zu entry=%zu sring=%zu req_prod=%zu req_event=%zu rsp_prod=%zu "
           "rsp_event=%zu pvt=%zu pad=%zu ring=%zu",
           sizeof(struct t_request), sizeof(struct t_response), sizeof(union t_sring_entry),
           sizeof(struct t_sring), offsetof(struct t_sring, req_prod), offsetof(struct t_sring, req_event),
           offsetof(struct t_sring, rsp_prod), offsetof(struct t_sring, rsp_event),
           offsetof(struct t_sring, pvt), offsetof(struct t_sring, __pad), offsetof(struct t_sring, ring));
    for (unsigned order = 0; order <= ORDER_MAX; order++) {
        size_t bytes = (size_t)PAGE_BYTES << order;
        /* Both ways ring.h sizes a ring: by name tag (constant) and through a pointer (attach). */
        unsigned long by_tag = __CONST_RING_SIZE(t, bytes);
        t_sring_t *s = aligned_alloc(PAGE_BYTES, bytes);
        t_front_ring_t fr;
        if (!s) fail("out of memory", "layout");
        SHARED_RING_INIT(s);
        FRONT_RING_INIT(&fr, s, bytes);
        printf(" entries%u=%lu attach%u=%u", order, by_tag, order, RING_SIZE(&fr));
        free(s);
    }
    printf("\n");
}

static void do_init(unsigned order, uint32_t start, const char *line)
{
    size_t bytes;
    int padzero = 1;
    if (order > ORDER_MAX) fail("order out of range", line);
    free(sring);
    bytes = (size_t)PAGE_BYTES << order;
    sring = aligned_alloc(PAGE_BYTES, bytes);
    if (!sring) fail("out of memory", line);
    memset(sring, 0xa5, bytes); /* SHARED_RING_INIT must clear pvt and __pad */
    SHARED_RING_INIT(sring);
    sring->req_prod = sring->rsp_prod = start;
    sring->req_event = sring->rsp_event = start + 1;
    FRONT_RING_ATTACH(&front, sring, start, bytes);
    BACK_RING_ATTACH(&back, sring, start, bytes);
    for (size_t i = offsetof(struct t_sring, pvt); i < offsetof(struct t_sring, ring); i++)
        if (((uint8_t *)sring)[i] != 0) padzero = 0;
    printf("init size=%u padzero=%d", RING_SIZE(&front), padzero);
}

static void do_push_req(uint32_t n)
{
    uint32_t free_before = RING_FREE_REQUESTS(&front), pushed = 0;
    int refused = 0;
    while (pushed < n) {
        struct t_request *req;
        if (RING_FULL(&front)) {
            refused = 1;
            break;
        }
        req = RING_GET_REQUEST(&front, front.req_prod_pvt);
        req->id = front.req_prod_pvt;
        for (unsigned j = 0; j < sizeof(req->body); j++) req->body[j] = req_byte(front.req_prod_pvt, j + 4);
        front.req_prod_pvt++;
        pushed++;
    }
    printf("push_req free=%u pushed=%u refused=%d full=%d", free_before, pushed, refused,
           RING_FULL(&front) ? 1 : 0);
}

static void do_consume_req(uint32_t n)
{
    uint32_t avail = XEN_RING_NR_UNCONSUMED_REQUESTS(&back), took = 0, sum = 0, bad = 0;
    while (took < n && RING_HAS_UNCONSUMED_REQUESTS(&back)) {
        struct t_request req;
        /* Guaranteed by the unconsumed count, which is bounded by the free response slots. */
        if (RING_REQUEST_CONS_OVERFLOW(&back, back.req_cons)) {
            printf("consume_req c.consovf=1");
            return;
        }
        RING_COPY_REQUEST(&back, back.req_cons, &req);
        if (req.id != back.req_cons) bad++;
        for (unsigned j = 0; j < sizeof(req.body); j++)
            if (req.body[j] != req_byte(back.req_cons, j + 4)) bad++;
        sum += req.id;
        back.req_cons++;
        took++;
    }
    printf("consume_req avail=%u took=%u sum=%u bad=%u", avail, took, sum, bad);
}

static void do_push_rsp(uint32_t n)
{
    uint32_t pushed = 0;
    int refused = 0;
    while (pushed < n) {
        struct t_response *rsp;
        if (back.rsp_prod_pvt == back.req_cons) {
            refused = 1; /* every consumed request is answered */
            break;
        }
        rsp = RING_GET_RESPONSE(&back, back.rsp_prod_pvt);
        rsp->id = ~back.rsp_prod_pvt;
        for (unsigned j = 0; j < sizeof(rsp->body); j++) rsp->body[j] = rsp_byte(back.rsp_prod_pvt, j + 4);
        back.rsp_prod_pvt++;
        pushed++;
    }
    printf("push_rsp pushed=%u refused=%d", pushed, refused);
}

static void do_consume_rsp(uint32_t n)
{
    RING_IDX rp = sring->rsp_prod;
    uint32_t avail, took = 0, sum = 0, bad = 0;
    if (RING_RESPONSE_PROD_OVERFLOW(&front, rp)) {
        printf("consume_rsp c.rspovf=1");
        return;
    }
    avail = XEN_RING_NR_UNCONSUMED_RESPONSES(&front);
    while (took < n && RING_HAS_UNCONSUMED_RESPONSES(&front)) {
        struct t_response rsp;
        RING_COPY_RESPONSE(&front, front.rsp_cons, &rsp);
        if (rsp.id != ~front.rsp_cons) bad++;
        for (unsigned j = 0; j < sizeof(rsp.body); j++)
            if (rsp.body[j] != rsp_byte(front.rsp_cons, j + 4)) bad++;
        sum += ~rsp.id;
        front.rsp_cons++;
        took++;
    }
    printf("consume_rsp avail=%u took=%u sum=%u bad=%u", avail, took, sum, bad);
}

int main(void)
{
    char line[256];
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    while (fgets(line, sizeof line, stdin)) {
        char op[32];
        long long arg1 = 0, arg2 = 0;
        int nargs;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0' || line[0] == '#') continue;
        nargs = sscanf(line, "%31s %lld %lld", op, &arg1, &arg2);
        if (nargs < 1) fail("unparsable line", line);
        /* Counts and indices are u32; deltas are signed 32-bit and wrap like RING_IDX. */
        uint32_t a1 = (uint32_t)arg1, a2 = (uint32_t)arg2;

        if (!strcmp(op, "layout")) {
            do_layout();
            continue; /* no ring yet, no state */
        }
        if (!strcmp(op, "init")) {
            if (nargs != 3) fail("init ORDER START", line);
            do_init(a1, a2, line);
            print_state();
            continue;
        }
        if (!sring) fail("no ring: init first", line);

        if (!strcmp(op, "push_req") && nargs == 2) {
            do_push_req(a1);
        } else if (!strcmp(op, "push_req_notify") && nargs == 1) {
            int notify;
            RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&front, notify);
            printf("push_req_notify notify=%d", notify ? 1 : 0);
        } else if (!strcmp(op, "push_req_nonotify") && nargs == 1) {
            RING_PUSH_REQUESTS(&front);
            printf("push_req_nonotify");
        } else if (!strcmp(op, "consume_req") && nargs == 2) {
            do_consume_req(a1);
        } else if (!strcmp(op, "push_rsp") && nargs == 2) {
            do_push_rsp(a1);
        } else if (!strcmp(op, "push_rsp_notify") && nargs == 1) {
            int notify;
            RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&back, notify);
            printf("push_rsp_notify notify=%d", notify ? 1 : 0);
        } else if (!strcmp(op, "push_rsp_nonotify") && nargs == 1) {
            RING_PUSH_RESPONSES(&back);
            printf("push_rsp_nonotify");
        } else if (!strcmp(op, "final_req") && nargs == 1) {
            unsigned int work;
            RING_FINAL_CHECK_FOR_REQUESTS(&back, work);
            printf("final_req work=%d", work ? 1 : 0);
        } else if (!strcmp(op, "final_rsp") && nargs == 1) {
            unsigned int work;
            RING_FINAL_CHECK_FOR_RESPONSES(&front, work);
            printf("final_rsp work=%d", work ? 1 : 0);
        } else if (!strcmp(op, "consume_rsp") && nargs == 2) {
            do_consume_rsp(a1);
        } else if (!strcmp(op, "query") && nargs == 1) {
            printf("query size=%u free=%u full=%d unc_req=%u unc_rsp=%u", RING_SIZE(&front),
                   RING_FREE_REQUESTS(&front), RING_FULL(&front) ? 1 : 0,
                   XEN_RING_NR_UNCONSUMED_REQUESTS(&back), XEN_RING_NR_UNCONSUMED_RESPONSES(&front));
        } else if (!strcmp(op, "req_prod_ovf") && nargs == 2) {
            RING_IDX prod = back.rsp_prod_pvt + a1;
            int ovf = RING_REQUEST_PROD_OVERFLOW(&back, prod) ? 1 : 0;
            /* "tight" adds what ring.h lets through: req_prod moved back behind req_cons. */
            int tight = ovf || (RING_IDX)(prod - back.req_cons) > (RING_IDX)(prod - back.rsp_prod_pvt);
            printf("req_prod_ovf prod=%u ovf=%d tight=%d", prod, ovf, tight);
            if (!tight) {
                /* What a backend that passed the overflow check would count with that req_prod. */
                t_back_ring_t probe = back;
                probe.sring = &probe_sring;
                probe_sring.req_prod = prod;
                printf(" unc=%u", XEN_RING_NR_UNCONSUMED_REQUESTS(&probe));
            }
        } else if (!strcmp(op, "rsp_prod_ovf") && nargs == 2) {
            RING_IDX prod = front.rsp_cons + a1;
            /* ring.h's check is against the ring size; "tight" is against the requests outstanding. */
            int tight = (RING_IDX)(prod - front.rsp_cons) > (RING_IDX)(front.req_prod_pvt - front.rsp_cons);
            printf("rsp_prod_ovf prod=%u tight=%d c.macro=%d", prod, tight,
                   RING_RESPONSE_PROD_OVERFLOW(&front, prod) ? 1 : 0);
            if (!tight) {
                t_front_ring_t probe = front;
                probe.sring = &probe_sring;
                probe_sring.rsp_prod = prod;
                printf(" unc=%u", XEN_RING_NR_UNCONSUMED_RESPONSES(&probe));
            }
        } else if (!strcmp(op, "req_cons_ovf") && nargs == 2) {
            RING_IDX cons = back.req_cons + a1;
            printf("req_cons_ovf cons=%u ovf=%d", cons, RING_REQUEST_CONS_OVERFLOW(&back, cons) ? 1 : 0);
        } else if (!strcmp(op, "set_req_event") && nargs == 2) {
            sring->req_event = back.req_cons + a1;
            xen_mb();
            printf("set_req_event");
        } else if (!strcmp(op, "set_rsp_event") && nargs == 2) {
            sring->rsp_event = front.rsp_cons + a1;
            xen_mb();
            printf("set_rsp_event");
        } else {
            fail("unknown operation or wrong arguments", line);
        }
        print_state();
    }
    free(sring);
    return 0;
}
