/**
 * Grant tables (v1) and event channels: constants of Xen's public `grant_table.h` and
 * `event_channel.h`, by their Xen names.
 */

/** `struct grant_entry_v1 { u16 flags; domid_t domid; u32 frame; }`: 8 bytes. */
export const GRANT_ENTRY_V1_BYTES = 8;
export const GNTTAB_NR_RESERVED_ENTRIES = 8;
export const GNTTAB_RESERVED_CONSOLE = 0;
export const GNTTAB_RESERVED_XENSTORE = 1;

// Entry type (bits 0–1) and subflags.
export const GTF_invalid = 0;
export const GTF_permit_access = 1;
export const GTF_accept_transfer = 2;
export const GTF_transitive = 3;
export const GTF_type_mask = 3;
export const GTF_readonly = 1 << 2;
export const GTF_reading = 1 << 3;
export const GTF_writing = 1 << 4;
export const GTF_PWT = 1 << 5;
export const GTF_PCD = 1 << 6;
export const GTF_PAT = 1 << 7;
export const GTF_sub_page = 1 << 8;

// GNTTABOP_* commands.
export const GNTTABOP_map_grant_ref = 0;
export const GNTTABOP_unmap_grant_ref = 1;
export const GNTTABOP_setup_table = 2;
export const GNTTABOP_dump_table = 3;
export const GNTTABOP_transfer = 4;
export const GNTTABOP_copy = 5;
export const GNTTABOP_query_size = 6;
export const GNTTABOP_unmap_and_replace = 7;

// Map flags.
export const GNTMAP_device_map = 1 << 0;
export const GNTMAP_host_map = 1 << 1;
export const GNTMAP_readonly = 1 << 2;
export const GNTMAP_application_map = 1 << 3;
export const GNTMAP_contains_pte = 1 << 4;

// Copy flags.
export const GNTCOPY_source_gref = 1 << 0;
export const GNTCOPY_dest_gref = 1 << 1;

// Status codes (`GNTST_*`).
export const GNTST_okay = 0;
export const GNTST_general_error = -1;
export const GNTST_bad_domain = -2;
export const GNTST_bad_gntref = -3;
export const GNTST_bad_handle = -4;
export const GNTST_bad_virt_addr = -5;
export const GNTST_bad_dev_addr = -6;
export const GNTST_no_device_space = -7;
export const GNTST_permission_denied = -8;
export const GNTST_bad_page = -9;
export const GNTST_bad_copy_arg = -10;
export const GNTST_address_too_big = -11;
export const GNTST_eagain = -12;
export const GNTST_no_space = -13;

const GNTST_NAMES: Record<number, string> = {
  0: 'GNTST_okay',
  [-1]: 'GNTST_general_error',
  [-2]: 'GNTST_bad_domain',
  [-3]: 'GNTST_bad_gntref',
  [-4]: 'GNTST_bad_handle',
  [-5]: 'GNTST_bad_virt_addr',
  [-6]: 'GNTST_bad_dev_addr',
  [-7]: 'GNTST_no_device_space',
  [-8]: 'GNTST_permission_denied',
  [-9]: 'GNTST_bad_page',
  [-10]: 'GNTST_bad_copy_arg',
  [-11]: 'GNTST_address_too_big',
  [-12]: 'GNTST_eagain',
  [-13]: 'GNTST_no_space',
};
export const gntstName = (s: number): string => GNTST_NAMES[s] ?? `GNTST_${s}`;

/** Pin counts of an active grant entry (Xen's `GNTPIN_*`): 8 bits each. */
export const GNTPIN_hstw_shift = 0;
export const GNTPIN_hstr_shift = 8;
export const GNTPIN_devw_shift = 16;
export const GNTPIN_devr_shift = 24;
export const GNTPIN_hstw_inc = 1 << GNTPIN_hstw_shift;
export const GNTPIN_hstr_inc = 1 << GNTPIN_hstr_shift;
export const GNTPIN_hstw_mask = 0xff << GNTPIN_hstw_shift;
export const GNTPIN_hstr_mask = 0xff << GNTPIN_hstr_shift;

// Event channels.
export const EVTCHNSTAT_closed = 0;
export const EVTCHNSTAT_unbound = 1;
export const EVTCHNSTAT_interdomain = 2;
export const EVTCHNSTAT_pirq = 3;
export const EVTCHNSTAT_virq = 4;
export const EVTCHNSTAT_ipi = 5;

// errno values hypercalls return (negated), as Linux sees them.
export const EPERM = 1;
export const ENOENT = 2;
export const ESRCH = 3;
export const ENOMEM = 12;
export const EBUSY = 16;
export const EEXIST = 17;
export const EINVAL = 22;
export const ENOSPC = 28;
