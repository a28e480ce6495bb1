/**
 * @pvsim/topology — topology files: domains, their xl.cfg-style disks and dom0's backend options,
 * read from YAML and validated with errors that name the file, line, column and field.
 */
export * from './types.js';
export { parseTopology, formatTopologyErrors, DEFAULT_RUN_MEMORY, DEFAULT_DOM0_MEMORY, DISK_KEYS } from './parse.js';
export { parseSize, formatSize, KiB, MiB, GiB } from './size.js';
