export * from './types';
export { KernelTransport, openFlags } from './transport';
export { PinnedUserMemory } from './user-memory';
