/**
 * Kernel selection and flavour detection (blksnap-abi.md §1), with the
 * filesystem probe injected.
 */
import * as path from 'path';
import { ModuleMissingError, UsageError } from '../../lib/errors';
import { defaultSimDir, detectFlavour, kernelSelection, simFlavour } from '../../lib/kernel/detect';

const existing = (...paths: string[]) => (p: string) => paths.includes(p);

describe('detectFlavour', () => {
  test('upstream when /dev/blksnap-control exists (even if the standalone nodes exist too)', () => {
    expect(detectFlavour(existing('/dev/blksnap-control'))).toBe('upstream');
    expect(detectFlavour(existing('/dev/blksnap-control', '/dev/veeamblksnap', '/dev/bdevfilter'))).toBe('upstream');
  });

  test('standalone needs both /dev/veeamblksnap and /dev/bdevfilter', () => {
    expect(detectFlavour(existing('/dev/veeamblksnap', '/dev/bdevfilter'))).toBe('standalone');
    expect(() => detectFlavour(existing('/dev/veeamblksnap'))).toThrow(/\/dev\/veeamblksnap exists but \/dev\/bdevfilter does not/);
  });

  test('neither: ModuleMissingError naming every path, with a hint', () => {
    let err: unknown;
    try {
      detectFlavour(existing());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ModuleMissingError);
    const e = err as ModuleMissingError;
    for (const p of ['/dev/blksnap-control', '/dev/veeamblksnap', '/dev/bdevfilter']) expect(e.message).toContain(p);
    expect(e.message).not.toContain('\n');
    expect(e.hint).toContain('modprobe');
    expect(e.hint).toContain('--kernel sim');
  });
});

describe('kernelSelection', () => {
  test('option, then BLKSNAP_KERNEL, then auto', () => {
    expect(kernelSelection({ kernel: 'sim' }, { BLKSNAP_KERNEL: 'upstream' })).toBe('sim');
    expect(kernelSelection({}, { BLKSNAP_KERNEL: 'standalone' })).toBe('standalone');
    expect(kernelSelection({}, {})).toBe('auto');
  });

  test('an unknown value is a UsageError naming it and its source', () => {
    expect(() => kernelSelection({}, { BLKSNAP_KERNEL: 'qemu' })).toThrow(UsageError);
    expect(() => kernelSelection({}, { BLKSNAP_KERNEL: 'qemu' })).toThrow('invalid kernel "qemu" (BLKSNAP_KERNEL)');
    expect(() => kernelSelection({ kernel: 'x' as never }, {})).toThrow('invalid kernel "x" (--kernel)');
  });
});

describe('sim defaults', () => {
  test('sim dir: BLKSNAP_SIM_DIR, else XDG_RUNTIME_DIR/blksnap-sim, else tmp/blksnap-sim-UID', () => {
    expect(defaultSimDir({ BLKSNAP_SIM_DIR: '/a/b', XDG_RUNTIME_DIR: '/run/user/1' })).toBe('/a/b');
    expect(defaultSimDir({ XDG_RUNTIME_DIR: '/run/user/1' })).toBe('/run/user/1/blksnap-sim');
    expect(path.basename(defaultSimDir({}))).toMatch(/^blksnap-sim-\d+$/);
  });

  test('sim flavour: option, env, default upstream; bad values refused', () => {
    expect(simFlavour({ simFlavour: 'standalone' }, {})).toBe('standalone');
    expect(simFlavour({}, { BLKSNAP_SIM_FLAVOUR: 'standalone' })).toBe('standalone');
    expect(simFlavour({}, {})).toBe('upstream');
    expect(() => simFlavour({}, { BLKSNAP_SIM_FLAVOUR: 'both' })).toThrow(UsageError);
  });
});
