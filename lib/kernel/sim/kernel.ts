/**
 * One simulated kernel = one state directory. Platform, transport and admin
 * API of a process share this object; other processes share the directory.
 */
import * as fs from 'fs';
import type { FlavourName } from '../../../ioctl-defs';
import { isKernelAnswer, syncWatched } from './model';
import { SimStore, type Transaction } from './store';

export { defaultSimDir } from '../detect';

export class SimKernel {
  readonly store: SimStore;
  readonly dir: string;
  constructor(dir: string) {
    // Canonical, so image paths compare equal to realpath() of what callers pass.
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    this.dir = fs.realpathSync(dir);
    this.store = new SimStore(this.dir);
  }

  /** A locked read-modify-write; errno answers commit what was done before them. */
  run<T>(fn: (tx: Transaction) => T): T {
    return this.store.transaction(fn, isKernelAnswer);
  }

  /** Like run, after feeding the module the writes other programs made to watched devices. */
  runSynced<T>(fn: (tx: Transaction) => T): T {
    return this.run((tx) => {
      syncWatched(tx);
      return fn(tx);
    });
  }

  /**
   * The module runs as one flavour at a time; switching is allowed while it
   * holds no tracker and no snapshot (a module reload loses nothing then).
   */
  claimFlavour(tx: Transaction, flavour: FlavourName): boolean {
    if (tx.state.flavour === flavour) return true;
    const busy = Object.keys(tx.state.trackers).length > 0 || tx.state.snapshots.length > 0;
    if (busy && tx.state.flavour !== null) return false;
    tx.state.flavour = flavour;
    tx.touch();
    return true;
  }
}
