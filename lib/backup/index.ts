/**
 * The backup engine: repository (format, lock, atomic commits), the copy
 * engine, the backup job, verify and restore. See docs/repository-format.md.
 */
export { runBackup, decideMode } from './job';
export type { BackupMode, BackupOptions, BackupSummary, BackupEvent, DeviceResult } from './job';
export { Repository, PointWriter, deviceKey, pointDirName, allPoints } from './repository';
export type { DeviceEntry, PointEntry, PointMeta, PointSummary } from './repository';
export { RepositoryLock, readLock, staleReason } from './lock';
export type { LockInfo, LockOptions } from './lock';
export { copyBlocks, alignedBuffers, runsBytes, DEFAULT_CHUNK_SIZE, DEFAULT_DEPTH } from './copy';
export type { BlockSink, CopyOptions, CopyStats, CopyProgress } from './copy';
export { verifyRepository } from './verify';
export type { VerifyOptions, VerifyReport, DeviceVerifyResult, PointVerifyResult } from './verify';
export { restorePoint } from './restore';
export type { RestoreOptions, RestoreSummary } from './restore';
export { decodeManifest, encodeManifest, FORMAT_VERSION, CHECKSUM_ALGORITHM } from './format';
export type { Manifest, DeviceRef, PointKind } from './format';
export { ByteProgressBar, humanBytes, humanDuration } from './progress';
