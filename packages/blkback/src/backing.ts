/**
 * Backing devices: what blkback submits validated I/O to. One interface for every kind (memory
 * and file now, iSCSI later). Sector numbers and counts are in the device's own logical sectors
 * of `sectorSize` bytes; blkback converts from blkif's 512-byte units.
 *
 * Operational errors (an I/O that failed) reject the promise: blkback turns a rejection into
 * BLKIF_RSP_ERROR for that request only. Nothing here ever blocks the event loop.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { assert } from '@pvsim/abi';

export interface BackingDevice {
  /** Size in logical sectors of `sectorSize` bytes. */
  readonly sectors: number;
  /** Logical sector size in bytes: a power of two, at least 512. */
  readonly sectorSize: number;
  readonly readOnly: boolean;
  /** Read `count` sectors starting at `sector`. */
  read(sector: number, count: number): Promise<Uint8Array>;
  /** Write `data` (a whole number of sectors) at `sector`. */
  write(sector: number, data: Uint8Array): Promise<void>;
  /** Make completed writes durable (BLKIF_OP_FLUSH_DISKCACHE). */
  flush(): Promise<void>;
  /**
   * Optional, for a device whose sectors are memory of this thread (`MemoryDisk`): a live view of
   * `count` sectors at `sector`, which blkback copies from (reads) or into (writes, unless
   * `readOnly`) at once, without a promise or a buffer per I/O. The range must be inside the
   * device (blkback validates first). A device without it is driven through `read`/`write`.
   */
  view?(sector: number, count: number): Uint8Array;
  /** Release the device. */
  close?(): Promise<void>;
}

function checkRange(dev: BackingDevice, sector: number, count: number): void {
  // The message only when it fails: this runs on every I/O.
  if (!(Number.isSafeInteger(sector) && Number.isSafeInteger(count) && sector >= 0 && count >= 0 && sector + count <= dev.sectors)) {
    assert(false, `I/O of sectors ${sector}+${count} outside a device of ${dev.sectors}: a bug in the caller (blkback validates first)`);
  }
}

/** A disk in a plain buffer (tests, scratch disks). */
export class MemoryDisk implements BackingDevice {
  readonly bytes: Uint8Array;

  constructor(
    readonly sectors: number,
    readonly sectorSize = 512,
    readonly readOnly = false,
    contents?: Uint8Array,
  ) {
    assert(Number.isSafeInteger(sectors) && sectors >= 0, `MemoryDisk of ${sectors} sectors`);
    assert(sectorSize >= 512 && (sectorSize & (sectorSize - 1)) === 0, `MemoryDisk sector size ${sectorSize} is not a power of two >= 512`);
    this.bytes = new Uint8Array(sectors * sectorSize);
    if (contents) this.bytes.set(contents.subarray(0, this.bytes.length));
  }

  read(sector: number, count: number): Promise<Uint8Array> {
    checkRange(this, sector, count);
    return Promise.resolve(this.bytes.slice(sector * this.sectorSize, (sector + count) * this.sectorSize));
  }

  write(sector: number, data: Uint8Array): Promise<void> {
    if (data.length % this.sectorSize !== 0) assert(false, `write of ${data.length} bytes, not whole sectors: a bug in the caller`);
    checkRange(this, sector, data.length / this.sectorSize);
    if (this.readOnly) return Promise.reject(new Error('write to a read-only MemoryDisk'));
    this.bytes.set(data, sector * this.sectorSize);
    return Promise.resolve();
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  /** The sectors themselves (see `BackingDevice.view`). */
  view(sector: number, count: number): Uint8Array {
    checkRange(this, sector, count);
    return this.bytes.subarray(sector * this.sectorSize, (sector + count) * this.sectorSize);
  }
}

/** A disk image file, through `fs.promises` (libuv's thread pool: the event loop never blocks). */
export class FileDisk implements BackingDevice {
  private constructor(
    private readonly fh: FileHandle,
    readonly sectors: number,
    readonly sectorSize: number,
    readonly readOnly: boolean,
  ) {}

  /**
   * Open `path`. Its size must be a whole number of sectors; `sizeBytes` creates or extends the
   * file to that size first (writable only).
   */
  static async open(path: string, opts: { readOnly?: boolean; sectorSize?: number; sizeBytes?: number } = {}): Promise<FileDisk> {
    const sectorSize = opts.sectorSize ?? 512;
    const readOnly = opts.readOnly ?? false;
    assert(sectorSize >= 512 && (sectorSize & (sectorSize - 1)) === 0, `FileDisk sector size ${sectorSize} is not a power of two >= 512`);
    const fh = await open(path, readOnly ? 'r' : opts.sizeBytes !== undefined ? 'a+' : 'r+');
    try {
      if (opts.sizeBytes !== undefined) {
        // 'a+' creates the file; reopen r+ for positional writes (appending mode ignores positions on Linux).
        await fh.close();
        const rw = await open(path, 'r+');
        const st = await rw.stat();
        if (st.size < opts.sizeBytes) await rw.truncate(opts.sizeBytes);
        return FileDisk.of(rw, sectorSize, readOnly);
      }
      return await FileDisk.of(fh, sectorSize, readOnly);
    } catch (e) {
      await fh.close().catch(() => {});
      throw e;
    }
  }

  private static async of(fh: FileHandle, sectorSize: number, readOnly: boolean): Promise<FileDisk> {
    const { size } = await fh.stat();
    if (size % sectorSize !== 0) {
      await fh.close();
      throw new Error(`disk image of ${size} bytes is not a whole number of ${sectorSize}-byte sectors`);
    }
    return new FileDisk(fh, size / sectorSize, sectorSize, readOnly);
  }

  async read(sector: number, count: number): Promise<Uint8Array> {
    checkRange(this, sector, count);
    const buf = new Uint8Array(count * this.sectorSize);
    let done = 0;
    while (done < buf.length) {
      const { bytesRead } = await this.fh.read(buf, done, buf.length - done, sector * this.sectorSize + done);
      if (bytesRead === 0) throw new Error(`short read at sector ${sector}: the image shrank under us`);
      done += bytesRead;
    }
    return buf;
  }

  async write(sector: number, data: Uint8Array): Promise<void> {
    if (data.length % this.sectorSize !== 0) assert(false, `write of ${data.length} bytes, not whole sectors: a bug in the caller`);
    checkRange(this, sector, data.length / this.sectorSize);
    if (this.readOnly) throw new Error('write to a read-only FileDisk');
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, sector * this.sectorSize + done);
      done += bytesWritten;
    }
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await this.fh.datasync();
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
