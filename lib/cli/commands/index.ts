/**
 * Every top-level command module, in the order `blksnap --help` lists them.
 * A new command is one file in this directory plus one line here.
 */
import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../context';
import version from './version';
import attach from './attach';
import detach from './detach';
import cbt from './cbt';
import snapshot from './snapshot';
import backup from './backup';
import verify from './verify';
import restore from './restore';
import cleanup from './cleanup';
import debug from './debug';
import sim from './sim';
import mod, { moduleGroup } from './mod';
import setlog from './setlog';
import cbtinfo from './compat-cbtinfo';
import readcbtmap from './compat-readcbtmap';
import markdirtyblock from './compat-markdirtyblock';
import snapshotCreate from './compat-snapshot-create';
import snapshotAdd from './compat-snapshot-add';
import snapshotTake from './compat-snapshot-take';
import snapshotDestroy from './compat-snapshot-destroy';
import snapshotCollect from './compat-snapshot-collect';
import snapshotInfo from './compat-snapshot-info';
import snapshotWaitevent from './compat-snapshot-waitevent';
import snapshotWatcher from './compat-snapshot-watcher';

export const commands: readonly CommandModule<GlobalArgs, any>[] = [
  version,
  attach,
  detach,
  cbt,
  snapshot,
  backup,
  verify,
  restore,
  cleanup,
  moduleGroup,
  mod,
  setlog,
  debug,
  sim,
  // The reference C++ tool's forms (hidden from --help, listed in its epilog and the man page).
  cbtinfo,
  readcbtmap,
  markdirtyblock,
  snapshotCreate,
  snapshotAdd,
  snapshotTake,
  snapshotDestroy,
  snapshotCollect,
  snapshotInfo,
  snapshotWaitevent,
  snapshotWatcher,
];

/** Names of the reference tool's commands this CLI accepts unchanged. */
export const referenceFormNames: readonly string[] = [
  'version', 'attach --device', 'detach --device', 'cbtinfo', 'readcbtmap', 'markdirtyblock',
  'snapshot_create', 'snapshot_add', 'snapshot_take', 'snapshot_destroy', 'snapshot_collect',
  'snapshot_info', 'snapshot_waitevent', 'snapshot_watcher', 'mod', 'setlog',
];
