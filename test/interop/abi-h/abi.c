/*
 * Prints the ABI facts of Xen's public headers that pvsim hard-codes, one per line:
 *
 *     NAME<tab>JSON
 *
 * NAME is the header's own name (`BLKIF_OP_DISCARD`, `XS_WATCH_EVENT`, `XenbusStateClosed`) or
 * an expression (`sizeof(struct blkif_request)`, `blkif_request.id` for [offset, size],
 * `__CONST_RING_SIZE(blkif)` for the entries of a 2^order-page ring, orders 0..10); JSON is a
 * number, a string or an array/object. A line `@header xen/io/blkif.h` names the header of the
 * facts after it. test/interop/abi-h/abi-h.test.ts compiles this against /usr/include/xen
 * (Debian's libxen-dev), runs it and compares each fact with pvsim's exported constants.
 *
 * Every name of a family is printed (all GNTTABOP_*, all EVTCHNOP_*, all DOMID_*, every Xen
 * errno via the header's own XEN_ERRNO x-macro), whether pvsim uses it or not: the test compares
 * whatever pvsim exports under the same name.
 *
 * Build: cc -std=gnu11 -Wall -Wextra -Werror [-DHAVE_XS_FEATURE_QUOTA] abi.c -o abi
 * HAVE_XS_FEATURE_QUOTA: the header names XS_GET_FEATURE .. XS_SET_QUOTA (newer than Xen 4.17);
 * the test probes for them first.
 */
/* A guest that speaks the newest interface these headers describe. */
#define __XEN_INTERFACE_VERSION__ __XEN_LATEST_INTERFACE_VERSION__

#include <errno.h> /* before xs_wire.h: xsd_errors[] exists only when EINVAL does */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/event_channel.h>
#include <xen/io/ring.h>
#include <xen/io/blkif.h>
#include <xen/io/protocols.h>
#include <xen/io/xenbus.h>
#include <xen/io/xs_wire.h>

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20 || c >= 0x7f) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void hex(const void *p, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) printf("%02x", ((const unsigned char *)p)[i]);
    putchar('"');
}

/* #x is the argument as written, before expansion: the header's name. */
#define INT(x) printf("%s\t%lld\n", #x, (long long)(x))
#define STR(x) (printf("%s\t", #x), json_string(x), putchar('\n'))
#define SIZEOF(t) printf("sizeof(%s)\t%zu\n", #t, sizeof(t))
#define FIELD(s, f) printf("%s.%s\t[%zu,%zu]\n", #s, #f, offsetof(struct s, f), sizeof(((struct s *)0)->f))
/* The header the following facts come from, for the test's messages. */
#define HEADER(h) printf("@header %s\n", h)

static void io_blkif(void) {
    HEADER("xen/io/blkif.h");
    INT(BLKIF_OP_READ);
    INT(BLKIF_OP_WRITE);
    INT(BLKIF_OP_WRITE_BARRIER);
    INT(BLKIF_OP_FLUSH_DISKCACHE);
    INT(BLKIF_OP_RESERVED_1);
    INT(BLKIF_OP_DISCARD);
    INT(BLKIF_OP_INDIRECT);
    INT(BLKIF_MAX_SEGMENTS_PER_REQUEST);
    INT(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST);
    INT(BLKIF_DISCARD_SECURE);
    INT(BLKIF_RSP_EOPNOTSUPP);
    INT(BLKIF_RSP_ERROR);
    INT(BLKIF_RSP_OKAY);
    INT(VDISK_CDROM);
    INT(VDISK_REMOVABLE);
    INT(VDISK_READONLY);

    SIZEOF(struct blkif_request);
    SIZEOF(struct blkif_request_segment);
    SIZEOF(struct blkif_request_discard);
    SIZEOF(struct blkif_request_indirect);
    SIZEOF(struct blkif_response);
    SIZEOF(union blkif_sring_entry);
    FIELD(blkif_request, operation);
    FIELD(blkif_request, nr_segments);
    FIELD(blkif_request, handle);
    FIELD(blkif_request, id);
    FIELD(blkif_request, sector_number);
    FIELD(blkif_request, seg);
    FIELD(blkif_request_segment, gref);
    FIELD(blkif_request_segment, first_sect);
    FIELD(blkif_request_segment, last_sect);
    FIELD(blkif_request_discard, operation);
    FIELD(blkif_request_discard, flag);
    FIELD(blkif_request_discard, handle);
    FIELD(blkif_request_discard, id);
    FIELD(blkif_request_discard, sector_number);
    FIELD(blkif_request_discard, nr_sectors);
    FIELD(blkif_response, id);
    FIELD(blkif_response, operation);
    FIELD(blkif_response, status);

    /* Ring entries in 2^order pages, as a frontend sizes its ring (__CONST_RING_SIZE). */
    printf("__CONST_RING_SIZE(blkif)\t[");
    for (int order = 0; order <= 10; order++)
        printf("%s%lu", order ? "," : "", (unsigned long)__CONST_RING_SIZE(blkif, (size_t)4096 << order));
    printf("]\n");

    HEADER("xen/io/ring.h");
    INT(XEN_PAGE_SHIFT); /* io/ring.h's own, when the includer has none */

    HEADER("xen/io/protocols.h");
    STR(XEN_IO_PROTO_ABI_X86_32);
    STR(XEN_IO_PROTO_ABI_X86_64);
    STR(XEN_IO_PROTO_ABI_ARM);
#ifdef XEN_IO_PROTO_ABI_NATIVE
    STR(XEN_IO_PROTO_ABI_NATIVE);
#endif
#if defined(__x86_64__)
    printf("arch\t\"x86_64\"\n");
#elif defined(__i386__)
    printf("arch\t\"x86_32\"\n");
#elif defined(__aarch64__) || defined(__arm__)
    printf("arch\t\"arm\"\n");
#else
    printf("arch\t\"other\"\n");
#endif
}

static void grant_table(void) {
    HEADER("xen/grant_table.h");
    INT(GNTTAB_NR_RESERVED_ENTRIES);
    INT(GNTTAB_RESERVED_CONSOLE);
    INT(GNTTAB_RESERVED_XENSTORE);
    SIZEOF(struct grant_entry_v1);
    FIELD(grant_entry_v1, flags);
    FIELD(grant_entry_v1, domid);
    FIELD(grant_entry_v1, frame);

    INT(GTF_invalid);
    INT(GTF_permit_access);
    INT(GTF_accept_transfer);
    INT(GTF_transitive);
    INT(GTF_type_mask);
    INT(GTF_readonly);
    INT(GTF_reading);
    INT(GTF_writing);
    INT(GTF_PWT);
    INT(GTF_PCD);
    INT(GTF_PAT);
    INT(GTF_sub_page);
    INT(GTF_transfer_committed);
    INT(GTF_transfer_completed);

    INT(GNTTABOP_map_grant_ref);
    INT(GNTTABOP_unmap_grant_ref);
    INT(GNTTABOP_setup_table);
    INT(GNTTABOP_dump_table);
    INT(GNTTABOP_transfer);
    INT(GNTTABOP_copy);
    INT(GNTTABOP_query_size);
    INT(GNTTABOP_unmap_and_replace);
    INT(GNTTABOP_set_version);
    INT(GNTTABOP_get_status_frames);
    INT(GNTTABOP_get_version);
    INT(GNTTABOP_swap_grant_ref);
    INT(GNTTABOP_cache_flush);

    INT(GNTMAP_device_map);
    INT(GNTMAP_host_map);
    INT(GNTMAP_readonly);
    INT(GNTMAP_application_map);
    INT(GNTMAP_contains_pte);
    INT(GNTCOPY_source_gref);
    INT(GNTCOPY_dest_gref);

    INT(GNTST_okay);
    INT(GNTST_general_error);
    INT(GNTST_bad_domain);
    INT(GNTST_bad_gntref);
    INT(GNTST_bad_handle);
    INT(GNTST_bad_virt_addr);
    INT(GNTST_bad_dev_addr);
    INT(GNTST_no_device_space);
    INT(GNTST_permission_denied);
    INT(GNTST_bad_page);
    INT(GNTST_bad_copy_arg);
    INT(GNTST_address_too_big);
    INT(GNTST_eagain);
    INT(GNTST_no_space);
    /* One message per status, indexed by -GNTST_*: how many statuses the header has. */
    static const char *const msgs[] = GNTTABOP_error_msgs;
    printf("GNTTABOP_error_msgs.length\t%zu\n", sizeof msgs / sizeof msgs[0]);

    /* A guest's entry granting read-only access, as the guest writes it. */
    struct grant_entry_v1 e;
    memset(&e, 0, sizeof e);
    e.flags = GTF_permit_access | GTF_readonly;
    e.domid = 0x0102;
    e.frame = 0x0304;
    printf("grant_entry_v1.example\t{\"flags\":%u,\"domid\":%u,\"frame\":%u,\"bytes\":", e.flags, e.domid, e.frame);
    hex(&e, sizeof e);
    printf("}\n");
}

static void event_channel(void) {
    HEADER("xen/event_channel.h");
    INT(EVTCHNOP_bind_interdomain);
    INT(EVTCHNOP_bind_virq);
    INT(EVTCHNOP_bind_pirq);
    INT(EVTCHNOP_close);
    INT(EVTCHNOP_send);
    INT(EVTCHNOP_status);
    INT(EVTCHNOP_alloc_unbound);
    INT(EVTCHNOP_bind_ipi);
    INT(EVTCHNOP_bind_vcpu);
    INT(EVTCHNOP_unmask);
    INT(EVTCHNOP_reset);
    INT(EVTCHNOP_init_control);
    INT(EVTCHNOP_expand_array);
    INT(EVTCHNOP_set_priority);
    INT(EVTCHNSTAT_closed);
    INT(EVTCHNSTAT_unbound);
    INT(EVTCHNSTAT_interdomain);
    INT(EVTCHNSTAT_pirq);
    INT(EVTCHNSTAT_virq);
    INT(EVTCHNSTAT_ipi);
}

static void xen_h(void) {
    HEADER("xen/xen.h");
    INT(DOMID_FIRST_RESERVED);
    INT(DOMID_SELF);
    INT(DOMID_IO);
    INT(DOMID_XEN);
    INT(DOMID_COW);
    INT(DOMID_INVALID);
    INT(DOMID_IDLE);
    INT(DOMID_MASK);
    SIZEOF(domid_t);
    SIZEOF(grant_ref_t);
    SIZEOF(evtchn_port_t);
}

static void errno_h(void) {
    HEADER("xen/errno.h");
    /* The header's second mode: it expands its list with the includer's XEN_ERRNO (and #undefs it). */
#define XEN_ERRNO(name, value) printf("XEN_%s\t%d\n", #name, value);
#include <xen/errno.h>
}

static void xenbus_h(void) {
    HEADER("xen/io/xenbus.h");
    INT(XenbusStateUnknown);
    INT(XenbusStateInitialising);
    INT(XenbusStateInitWait);
    INT(XenbusStateInitialised);
    INT(XenbusStateConnected);
    INT(XenbusStateClosing);
    INT(XenbusStateClosed);
    INT(XenbusStateReconfiguring);
    INT(XenbusStateReconfigured);
}

static void xs_wire(void) {
    HEADER("xen/io/xs_wire.h");
    INT(XS_CONTROL);
    INT(XS_DEBUG);
    INT(XS_DIRECTORY);
    INT(XS_READ);
    INT(XS_GET_PERMS);
    INT(XS_WATCH);
    INT(XS_UNWATCH);
    INT(XS_TRANSACTION_START);
    INT(XS_TRANSACTION_END);
    INT(XS_INTRODUCE);
    INT(XS_RELEASE);
    INT(XS_GET_DOMAIN_PATH);
    INT(XS_WRITE);
    INT(XS_MKDIR);
    INT(XS_RM);
    INT(XS_SET_PERMS);
    INT(XS_WATCH_EVENT);
    INT(XS_ERROR);
    INT(XS_IS_DOMAIN_INTRODUCED);
    INT(XS_RESUME);
    INT(XS_SET_TARGET);
    INT(XS_RESET_WATCHES);
    INT(XS_DIRECTORY_PART);
#ifdef HAVE_XS_FEATURE_QUOTA
    INT(XS_GET_FEATURE);
    INT(XS_SET_FEATURE);
    INT(XS_GET_QUOTA);
    INT(XS_SET_QUOTA);
#endif
    INT(XS_TYPE_COUNT);
    INT(XS_INVALID);
    INT(XS_WATCH_PATH);
    INT(XS_WATCH_TOKEN);
    INT(XENSTORE_PAYLOAD_MAX);
    INT(XENSTORE_ABS_PATH_MAX);
    INT(XENSTORE_REL_PATH_MAX);
    SIZEOF(struct xsd_sockmsg);
    FIELD(xsd_sockmsg, type);
    FIELD(xsd_sockmsg, req_id);
    FIELD(xsd_sockmsg, tx_id);
    FIELD(xsd_sockmsg, len);

    printf("xsd_errors\t[");
    for (size_t i = 0; i < sizeof xsd_errors / sizeof xsd_errors[0]; i++) {
        printf("%s[", i ? "," : "");
        json_string(xsd_errors[i].errstring);
        printf(",%d]", xsd_errors[i].errnum);
    }
    printf("]\n");

    /* Two whole messages as a client or xenstored writes them: header, then payload. */
    unsigned char buf[sizeof(struct xsd_sockmsg) + 64];
    struct xsd_sockmsg h;
    static const char payload[] = "T"; /* TRANSACTION_END's "commit", with its NUL */
    memset(&h, 0, sizeof h);
    h.type = XS_TRANSACTION_END;
    h.req_id = 0x11223344;
    h.tx_id = 0x55667788;
    h.len = sizeof payload;
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, payload, sizeof payload);
    printf("xsd_sockmsg.example\t{\"type\":%u,\"req_id\":%u,\"tx_id\":%u,\"payload\":", h.type, h.req_id, h.tx_id);
    hex(payload, sizeof payload);
    printf(",\"bytes\":");
    hex(buf, sizeof h + h.len);
    printf("}\n");

    /* XS_WATCH_EVENT: the strings in xs_watch_type order, each NUL-terminated. */
    const char *part[2];
    part[XS_WATCH_PATH] = "/local/domain/7/device/vbd/51712/state";
    part[XS_WATCH_TOKEN] = "tok-1";
    size_t n = 0;
    for (int i = 0; i < 2; i++) {
        size_t l = strlen(part[i]) + 1;
        memcpy(buf + sizeof h + n, part[i], l);
        n += l;
    }
    memset(&h, 0, sizeof h);
    h.type = XS_WATCH_EVENT;
    h.len = (uint32_t)n;
    memcpy(buf, &h, sizeof h);
    printf("xs_watch_event.example\t{\"path\":");
    json_string(part[XS_WATCH_PATH]);
    printf(",\"token\":");
    json_string(part[XS_WATCH_TOKEN]);
    printf(",\"bytes\":");
    hex(buf, sizeof h + n);
    printf("}\n");
}

int main(void) {
    io_blkif();
    grant_table();
    event_channel();
    xen_h();
    errno_h();
    xenbus_h();
    xs_wire();
    return ferror(stdout) ? 1 : 0;
}
