/** buildCli in-process: parsing, help, usage errors, exit codes, JSON errors (no kernel needed). */
import { run, jsonErrorOf } from './cli-harness';
import { buildCli, usageErrorFromYargs } from '../../lib/cli/main';
import { toolVersion } from '../../lib/cli/tool-version';

const env = { ...process.env, BLKSNAP_KERNEL: 'upstream', BLKSNAP_SIM_DIR: '/nonexistent-blksnap-sim' };

describe('usage errors', () => {
  test('no command: one line, a hint, exit 2, no stack', async () => {
    const r = await run([], env);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n')[0]).toBe('blksnap: no command given');
    expect(r.stderr).toMatch(/^hint: /m);
    expect(r.stderr).not.toMatch(/\bat .*\.ts:\d+/);
  });

  test('unknown command is named, with a suggestion', async () => {
    const r = await run(['snapshto'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "snapshto"');
    expect(r.stderr).toContain('did you mean "snapshot"');
  });

  test('unknown subcommand', async () => {
    const r = await run(['snapshot', 'crate'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "crate"');
  });

  test('unknown option is named', async () => {
    const r = await run(['attach', '/dev/x', '--frobnicate'], env);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe('blksnap: unknown option --frobnicate');
  });

  test('bad --kernel value', async () => {
    const r = await run(['version', '--kernel', 'windows'], env);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe('blksnap: invalid value "windows" for --kernel');
  });

  test('bad BLKSNAP_KERNEL value', async () => {
    const r = await run(['snapshot', 'list'], { ...env, BLKSNAP_KERNEL: 'nope' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('invalid kernel "nope"');
  });

  test('--json usage error is a JSON object on stderr, nothing on stdout', async () => {
    const r = await run(['snapshot', 'take', 'not-a-uuid', '--json'], env);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const e = jsonErrorOf(r);
    expect(e).toMatchObject({ code: 2, kind: 'usage', errno: null });
    expect(e.message).toContain('"not-a-uuid"');
    expect(e.hint).toMatch(/UUID/);
  });

  test('--verbose shows the stack', async () => {
    const r = await run(['snapshot', 'take', 'not-a-uuid', '--verbose'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/\n\s+at /);
  });

  test('malformed values in every parser are exit 2 and name the value', async () => {
    const cases: [string[], string][] = [
      [['snapshot', 'create', '/dev/x', '--limit', '0'], '"0"'],
      [['snapshot', 'create', '/dev/x', '--limit', '-5G'], '"-5G"'],
      [['snapshot', 'create', '/dev/x', '--limit', '12parsecs'], '"12parsecs"'],
      [['snapshot', 'destroy', 'abc'], '"abc"'],
      [['snapshot', 'watch', '3f2a8c1e-1b2c-4d5e-8f90-123456789abc', '--timeout', 'soon'], '"soon"'],
      [['cbt', 'changes', '/dev/x', '--since', 'x'], '"x"'],
      [['cbt', 'changes', '/dev/x', '--since', '300'], '"300"'],
      [['cbt', 'changes', '/dev/x', '--since', '1', '--generation', 'g'], '"g"'],
      [['cbt', 'mark-dirty', '/dev/x', '--range', '5'], '"5"'],
      [['cbt', 'mark-dirty', '/dev/x', '--range', '0:0'], '"0:0"'],
      [['snapshot_waitevent', '--id', 'zz', '--timeout', '1'], '"zz"'],
      [['snapshot_info', '--device', '/dev/x', '--field', 'colour'], "'colour'"],
      [['setlog', '--level', '7', '--filepath', 'relative.log'], '"relative.log"'],
      [['setlog', '--level', 'high', '--filepath', '/tmp/x.log'], '"high"'],
    ];
    for (const [argv, named] of cases) {
      const r = await run(argv, env);
      expect({ argv, code: r.code }).toEqual({ argv, code: 2 });
      expect(r.stderr.split('\n')[0]).toContain(named);
      expect(r.stderr).toMatch(/^hint: /m);
    }
  });

  test('missing arguments of the reference forms', async () => {
    for (const argv of [['cbtinfo'], ['snapshot_info'], ['readcbtmap', '--device', '/dev/x'], ['snapshot_take'], ['snapshot_destroy'], ['snapshot_add', '--id', '3f2a8c1e-1b2c-4d5e-8f90-123456789abc']]) {
      const r = await run(argv, env);
      expect({ argv, code: r.code }).toEqual({ argv, code: 2 });
    }
  });

  test('destroy: ids and --all together', async () => {
    const r = await run(['snapshot', 'destroy', '3f2a8c1e-1b2c-4d5e-8f90-123456789abc', '--all'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('not both');
  });

  test('usageErrorFromYargs words yargs messages', () => {
    expect(usageErrorFromYargs('Unknown argument: zap', ['zap']).message).toBe('unknown command "zap"');
    expect(usageErrorFromYargs('Unknown arguments: x, yy', ['attach', '-x', '--yy']).message).toBe('unknown option -x, --yy');
    expect(usageErrorFromYargs('Missing required argument: since', []).message).toBe('Missing required argument: since');
  });
});

describe('colour', () => {
  const { Output, colorEnabled } = require('../../lib/cli/output');
  const io = (tty: boolean, extra: Record<string, string> = {}) => ({ stdout: { write: () => true }, stderr: { write: () => true }, env: { ...extra }, stderrIsTTY: tty });
  test('only on a terminal, never with NO_COLOR or --no-color', () => {
    expect(colorEnabled(io(true), undefined)).toBe(true);
    expect(colorEnabled(io(false), undefined)).toBe(false);
    expect(colorEnabled(io(true, { NO_COLOR: '1' }), undefined)).toBe(false);
    expect(colorEnabled(io(true), false)).toBe(false);
  });
  test('an error on a colour terminal is painted, otherwise plain', () => {
    let text = '';
    const sink = { write: (s: string) => { text += s; return true; } };
    new Output({ stdout: sink, stderr: sink, env: {}, stderrIsTTY: true }, { json: false, quiet: false, verbose: false, color: true }).error(new Error('boom'));
    expect(text).toContain('\u001b[31mblksnap:');
    text = '';
    new Output({ stdout: sink, stderr: sink, env: {}, stderrIsTTY: true }, { json: false, quiet: false, verbose: false, color: false }).error(new Error('boom'));
    expect(text.split('\n')[0]).toBe('blksnap: boom');
    expect(text).not.toContain('\u001b');
  });
});

describe('help and version', () => {
  test('--version prints only the tool version', async () => {
    const r = await run(['--version'], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${toolVersion()}\n`);
    expect(toolVersion()).toMatch(/^\d+\.\d+\.\d+/);
  });

  test('--help lists commands, global options, exit codes', async () => {
    const r = await run(['--help'], env);
    expect(r.code).toBe(0);
    for (const word of ['version', 'attach', 'detach', 'cbt', 'snapshot', 'debug', 'sim', 'completion', 'setlog', 'Global Options:', '--kernel', '--sim-dir', '--json', '--quiet', '--no-color', 'Exit status:', '130']) {
      expect(r.stdout).toContain(word);
    }
  });

  const commandsWithExamples = [
    ['version'], ['attach'], ['detach'], ['cbt', 'info'], ['cbt', 'map'], ['cbt', 'changes'], ['cbt', 'mark-dirty'],
    ['snapshot', 'create'], ['snapshot', 'take'], ['snapshot', 'destroy'], ['snapshot', 'list'], ['snapshot', 'info'], ['snapshot', 'watch'],
    ['debug', 'abi'], ['mod'], ['module', 'info'], ['setlog'], ['sim', 'create-device'], ['sim', 'write'], ['sim', 'state'],
  ];
  test.each(commandsWithExamples)('%s --help has examples and exit codes', async (...cmd) => {
    const argv = (cmd as string[]).filter((c) => typeof c === 'string');
    const r = await run([...argv, '--help'], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Examples:');
    expect(r.stdout).toContain('Exit status:');
    expect(r.stderr).toBe('');
  });

  test('buildCli is strict and does not exit the process', async () => {
    const cli = buildCli(['nothing']);
    await expect((async () => cli.parseAsync())()).rejects.toThrow('unknown command "nothing"');
  });

  test('completion prints a bash script', async () => {
    const r = await run(['completion'], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('complete -o');
    expect(r.stdout).toContain('blksnap');
  });
});

describe('device arguments on a real kernel (checked before any ioctl)', () => {
  const fs = require('fs');
  const os = require('os');
  const path = require('path');
  let dir: string;
  let file: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blksnap-cli-dev-'));
    file = path.join(dir, 'disk.img');
    fs.writeFileSync(file, Buffer.alloc(4096));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('a regular file is not a device on a real kernel: exit 2, named, with a hint', async () => {
    for (const argv of [['attach', file], ['cbt', 'info', file], ['snapshot', 'create', file, '--limit', '1G'], ['snapshot_info', '--device', file]]) {
      const r = await run([...argv, '--kernel', 'upstream'], env);
      expect({ argv, code: r.code }).toEqual({ argv, code: 2 });
      expect(r.stderr.split('\n')[0]).toBe(`blksnap: ${file}: is a regular file, not a block device`);
      expect(r.stderr).toMatch(/^hint: .*--kernel sim/m);
    }
  });

  test('a directory is not a device: exit 2; a missing device: exit 5', async () => {
    const d = await run(['attach', dir, '--kernel', 'upstream'], env);
    expect(d.code).toBe(2);
    expect(d.stderr).toContain(`${dir}: is a directory`);
    const m = await run(['detach', path.join(dir, 'nope'), '--kernel', 'standalone'], env);
    expect(m.code).toBe(5);
    expect(m.stderr).toContain(path.join(dir, 'nope'));
  });

  test('Node system errors get the exit code of their errno', () => {
    const { asTypedError } = require('../../lib/cli/main');
    const { exitCodeFor } = require('../../lib/cli/exit-codes');
    const eacces = Object.assign(new Error("EACCES: permission denied, open '/x'"), { code: 'EACCES', syscall: 'open', path: '/x' });
    const typed = asTypedError(eacces);
    expect(exitCodeFor(typed)).toBe(4);
    expect(typed.message).toBe('/x: open: permission denied (EACCES)');
    expect(exitCodeFor(asTypedError(Object.assign(new Error('x'), { code: 'ENOENT', syscall: 'stat', path: '/y' })))).toBe(5);
    const plain = new Error('plain');
    expect(asTypedError(plain)).toBe(plain);
    expect(exitCodeFor(asTypedError(Object.assign(new Error('x'), { code: 'ERR_SOMETHING' })))).toBe(1);
  });
});

describe('commands that need no kernel', () => {
  test('debug abi --json: both flavours with the kernel names', async () => {
    const r = await run(['debug', 'abi', '--json'], env);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    const up = doc.flavours.upstream;
    expect(up.ioctls.find((i: { name: string }) => i.name === 'BLKFILTER_CTL')).toMatchObject({ number: 0xc0301290, size: 48, dir: '_IOWR' });
    const cbtinfo = up.structs.find((s: { name: string }) => s.name === 'blksnap_cbtinfo');
    expect(cbtinfo.fields.find((f: { name: string }) => f.name === 'changes_number')).toMatchObject({ offset: 32, size: 1 });
    expect(doc.flavours.standalone.ioctls.map((i: { name: string }) => i.name)).toContain('IOCTL_BLKSNAP_MOD');
  });

  test('debug abi text', async () => {
    const r = await run(['debug', 'abi'], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/IOCTL_BLKSNAP_SNAPSHOT_CREATE\s+0xc0205601/);
    expect(r.stdout).toMatch(/struct blksnap_snapshotinfo\s+size 36\s+align 4/);
  });

  test('no module: version still prints the tool version, exit 3', async () => {
    const r = await run(['version', '--kernel', 'upstream'], env);
    expect(r.stdout.split('\n')[0]).toBe(`blksnap ${toolVersion()}`);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/not loaded|no such/i);
  });

  test('no module: version --json has tool and null module, error JSON on stderr', async () => {
    const r = await run(['version', '--kernel', 'upstream', '--json'], env);
    expect(r.code).toBe(3);
    expect(JSON.parse(r.stdout)).toEqual({ tool: { name: 'blksnap', version: toolVersion() }, kernel: null, module: null });
    expect(jsonErrorOf(r)).toMatchObject({ code: 3, kind: 'module_missing' });
  });

  test.each([['snapshot', 'list'], ['snapshot_collect'], ['mod'], ['setlog', '--disable']])('no module: %s exits 3', async (...cmd) => {
    const r = await run([...(cmd as string[]).filter((c) => typeof c === 'string'), '--kernel', 'upstream'], env);
    expect(r.code).toBe(3);
  });
});
