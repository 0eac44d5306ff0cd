/**
 * Snapshot domain: one coherent snapshot of several devices, its records,
 * its events, and the cleanup of snapshots left by killed processes.
 */
export { SnapshotSession, createSnapshotSession } from './session';
export type { CreateSnapshotOptions, SnapshotDevice } from './session';
export { SnapshotWatcher } from './watcher';
export type { WatcherEnd, WatcherOptions } from './watcher';
export { DEFAULT_DIFF_STORAGE_CANDIDATES, checkDiffStorage, chooseDiffStorage, conflictingDevice, recordsOf } from './diff-storage';
export type { DiffStorageChoice, DiffStorageKind, DiffStorageRequest } from './diff-storage';
export { cleanupSnapshots, listSnapshots } from './cleanup';
export type { CleanupResult, ListedSnapshot } from './cleanup';
export { SnapshotRecords, newRecord } from '../kernel/records';
export type { SnapshotRecord } from '../kernel/records';
