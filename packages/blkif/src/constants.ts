/**
 * Constants of Xen's public `io/blkif.h`, under Xen's own names.
 */

/** `BLKIF_OP_*`: the `operation` byte of a request (and echoed in its response). */
export const BLKIF_OP_READ = 0;
export const BLKIF_OP_WRITE = 1;
export const BLKIF_OP_WRITE_BARRIER = 2;
export const BLKIF_OP_FLUSH_DISKCACHE = 3;
/** `BLKIF_OP_RESERVED_1`: never valid on the wire. */
export const BLKIF_OP_RESERVED_1 = 4;
export const BLKIF_OP_DISCARD = 5;
export const BLKIF_OP_INDIRECT = 6;

export type BlkifRwOp =
  | typeof BLKIF_OP_READ
  | typeof BLKIF_OP_WRITE
  | typeof BLKIF_OP_WRITE_BARRIER
  | typeof BLKIF_OP_FLUSH_DISKCACHE;

/** `BLKIF_MAX_SEGMENTS_PER_REQUEST`: segments in a direct request. */
export const BLKIF_MAX_SEGMENTS_PER_REQUEST = 11;
/** `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`. */
export const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST = 8;

/** `BLKIF_DISCARD_SECURE`: the only defined bit of a discard's `flag`. */
export const BLKIF_DISCARD_SECURE = 1 << 0;

/** `BLKIF_RSP_*`: the `status` of a response (`int16_t`). */
export const BLKIF_RSP_EOPNOTSUPP = -2;
export const BLKIF_RSP_ERROR = -1;
export const BLKIF_RSP_OKAY = 0;
export type BlkifStatus = typeof BLKIF_RSP_EOPNOTSUPP | typeof BLKIF_RSP_ERROR | typeof BLKIF_RSP_OKAY;
/** The statuses an invalid request can be answered with. */
export type BlkifErrorStatus = typeof BLKIF_RSP_EOPNOTSUPP | typeof BLKIF_RSP_ERROR;

/** Request sectors are always 512-byte units, whatever the disk's `sector-size`. */
export const BLKIF_SECTOR_BYTES = 512;
/** Sectors per 4 KiB frame: a segment's `first_sect`/`last_sect` are 0..7 inclusive. */
export const BLKIF_SECTORS_PER_FRAME = 8;

/** `info` bits (`VDISK_*`). */
export const VDISK_CDROM = 0x1;
export const VDISK_REMOVABLE = 0x2;
export const VDISK_READONLY = 0x4;

/** `XEN_IO_PROTO_ABI_*`: values of the frontend's `protocol` key. pvsim is "native" x86_64. */
export const XEN_IO_PROTO_ABI_X86_32 = 'x86_32-abi';
export const XEN_IO_PROTO_ABI_X86_64 = 'x86_64-abi';
export const XEN_IO_PROTO_ABI_ARM = 'arm-abi';
export const XEN_IO_PROTO_ABI_NATIVE = XEN_IO_PROTO_ABI_X86_64;

/** Linux blkback's `feature-max-indirect-segments` (written at probe). */
export const MAX_INDIRECT_SEGMENTS = 256;

/**
 * Response `operation` used when the request's `operation` was not even a byte (only possible
 * in pvsim's msgpack slots; in C the field is a `uint8_t`). Not a Xen name: Xen has no such case.
 */
export const BLKIF_OP_UNDECODABLE_ECHO = 0xff;
