/**
 * XenStore's vocabulary, as `io/xs_wire.h` and docs/misc/xenstore.txt define it.
 */

/** `enum xsd_sockmsg_type`. */
export const XS_CONTROL = 0;
export const XS_DIRECTORY = 1;
export const XS_READ = 2;
export const XS_GET_PERMS = 3;
export const XS_WATCH = 4;
export const XS_UNWATCH = 5;
export const XS_TRANSACTION_START = 6;
export const XS_TRANSACTION_END = 7;
export const XS_INTRODUCE = 8;
export const XS_RELEASE = 9;
export const XS_GET_DOMAIN_PATH = 10;
export const XS_WRITE = 11;
export const XS_MKDIR = 12;
export const XS_RM = 13;
export const XS_SET_PERMS = 14;
export const XS_WATCH_EVENT = 15;
export const XS_ERROR = 16;
export const XS_IS_DOMAIN_INTRODUCED = 17;
export const XS_RESUME = 18;
export const XS_SET_TARGET = 19;
export const XS_RESET_WATCHES = 21;
export const XS_DIRECTORY_PART = 22;
export const XS_GET_FEATURE = 23;
export const XS_SET_FEATURE = 24;
export const XS_GET_QUOTA = 25;
export const XS_SET_QUOTA = 26;
export const XS_INVALID = 0xffff;

/** `struct xsd_sockmsg`: 16 bytes, then `len` bytes of payload. */
export const XSD_SOCKMSG_BYTES = 16;
export const XENSTORE_PAYLOAD_MAX = 4096;
export const XENSTORE_ABS_PATH_MAX = 3072;
export const XENSTORE_REL_PATH_MAX = 2048;

/** The error names of `xsd_errors[]`: replies of type XS_ERROR carry `"<name>\0"`. */
export type XsError =
  | 'EINVAL'
  | 'EACCES'
  | 'EEXIST'
  | 'EISDIR'
  | 'ENOENT'
  | 'ENOMEM'
  | 'ENOSPC'
  | 'EIO'
  | 'ENOTEMPTY'
  | 'ENOSYS'
  | 'EROFS'
  | 'EBUSY'
  | 'EAGAIN'
  | 'EISCONN'
  | 'E2BIG'
  | 'EPERM';

/** One permission entry: `n` none, `r` read, `w` write, `b` both. The first entry of a node's
 * list names its owner and the default for every domain not listed. */
export type PermMode = 'n' | 'r' | 'w' | 'b';
export interface XsPerm {
  dom: number;
  mode: PermMode;
}

export type XsResult<T> = { ok: true; value: T } | { ok: false; error: XsError };

/** Per-domain limits (dom0 is not limited), with cxenstored's defaults. */
export interface XsQuota {
  /** Nodes a domain may own. */
  nodesPerDomain: number;
  /** Bytes of one node's value. */
  entryBytes: number;
  /** Watches one connection may hold. */
  watchesPerConnection: number;
  /** Transactions one connection may have open. */
  transactionsPerConnection: number;
}

export const XS_QUOTA_DEFAULT: XsQuota = {
  nodesPerDomain: 1000,
  entryBytes: 2048,
  watchesPerConnection: 128,
  transactionsPerConnection: 10,
};

/** A watch firing: the path that changed (relative if the watch was registered relative) and its token. */
export interface WatchEvent {
  path: string;
  token: string;
}

/**
 * What a connection is to the store: the domain it speaks for, and where its watch events go.
 * A Unix-socket connection from a dom0 tool and a ring connection from a guest are both one.
 */
export interface XsConnection {
  readonly id: number;
  readonly dom: number;
  /** Called for each watch event, in order. Must not throw. */
  deliver(ev: WatchEvent): void;
}
