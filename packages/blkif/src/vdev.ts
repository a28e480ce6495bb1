/**
 * Virtual-device names and numbers (Xen `docs/misc/vbd-interface.txt`, Linux xen-blkfront):
 * `xvd<letters>[<partition>]` ↔ the frontend's `virtual-device` number.
 *
 * - disks 0..15 with partitions 0..15: `(202 << 8) | (disk << 4) | part` (XENVBD major 202);
 * - otherwise the extended form `(1 << 28) | (disk << 8) | part`, disk < 2^20, part 0..255.
 * Disk letters count like Linux sd names: a..z = 0..25, aa = 26, …. Partition 0 is the whole
 * disk and is written without a number (`xvda`); `xvda1` is partition 1.
 */
import { assert, err, ok, type Result } from '@pvsim/abi';

export const XEN_VBD_MAJOR = 202;
export const XEN_VBD_EXTENDED = 1 << 28;
export const XEN_VBD_EXTENDED_DISK_MAX = (1 << 20) - 1;
export const XEN_VBD_EXTENDED_PART_MAX = 255;
const LEGACY_MAX = 15;

export interface Vdev {
  /** 0-based disk index (`xvda` is 0). */
  readonly disk: number;
  /** 0 for the whole disk. */
  readonly part: number;
}

/** Disk index → letters (bijective base 26). */
function diskLetters(disk: number): string {
  let s = '';
  let n = disk + 1;
  while (n > 0) {
    const r = (n - 1) % 26;
    s = String.fromCharCode(97 + r) + s;
    n = Math.floor((n - 1) / 26);
  }
  return s;
}

/** Parse `xvda`, `xvdb3`, `xvdaa`… Strict: lower-case letters, no leading zeros, in range. */
export function parseVdevName(name: string): Result<Vdev, string> {
  const m = /^xvd([a-z]{1,5})([1-9][0-9]{0,2})?$/.exec(name);
  if (!m) return err(`"${name}" is not an xvd device name (xvd<letters>[<partition>])`);
  let disk = 0;
  for (const c of m[1]!) disk = disk * 26 + (c.charCodeAt(0) - 96);
  disk -= 1;
  const part = m[2] === undefined ? 0 : Number(m[2]);
  if (disk > XEN_VBD_EXTENDED_DISK_MAX) return err(`"${name}": disk ${disk} beyond the extended limit ${XEN_VBD_EXTENDED_DISK_MAX}`);
  if (part > XEN_VBD_EXTENDED_PART_MAX) return err(`"${name}": partition ${part} beyond ${XEN_VBD_EXTENDED_PART_MAX}`);
  return ok({ disk, part });
}

export function formatVdevName(v: Vdev): string {
  return `xvd${diskLetters(v.disk)}${v.part === 0 ? '' : String(v.part)}`;
}

/** The `virtual-device` number of a disk/partition (legacy form whenever it fits). */
export function vdevNumber(v: Vdev): number {
  assert(Number.isInteger(v.disk) && v.disk >= 0 && v.disk <= XEN_VBD_EXTENDED_DISK_MAX, `vdev disk ${v.disk} out of range`);
  assert(Number.isInteger(v.part) && v.part >= 0 && v.part <= XEN_VBD_EXTENDED_PART_MAX, `vdev partition ${v.part} out of range`);
  if (v.disk <= LEGACY_MAX && v.part <= LEGACY_MAX) return (XEN_VBD_MAJOR << 8) | (v.disk << 4) | v.part;
  return (XEN_VBD_EXTENDED | (v.disk << 8) | v.part) >>> 0;
}

/** Decode a `virtual-device` number (xvd forms only). */
export function parseVdevNumber(n: number): Result<Vdev, string> {
  if (!(Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff)) return err(`virtual-device ${n} is not a u32`);
  if (n & XEN_VBD_EXTENDED) {
    if (n >= 2 * XEN_VBD_EXTENDED) return err(`virtual-device ${n}: bits above the extended flag are set`);
    return ok({ disk: (n >>> 8) & XEN_VBD_EXTENDED_DISK_MAX, part: n & 0xff });
  }
  if (n >>> 8 !== XEN_VBD_MAJOR) return err(`virtual-device ${n}: major ${n >>> 8} is not xvd (${XEN_VBD_MAJOR})`);
  return ok({ disk: (n >>> 4) & 0xf, part: n & 0xf });
}

/** `xvda1` → its `virtual-device` number. */
export function vdevNameToNumber(name: string): Result<number, string> {
  const v = parseVdevName(name);
  return v.ok ? ok(vdevNumber(v.value)) : v;
}

/** A `virtual-device` number → `xvd…` name. */
export function vdevNumberToName(n: number): Result<string, string> {
  const v = parseVdevNumber(n);
  return v.ok ? ok(formatVdevName(v.value)) : v;
}
