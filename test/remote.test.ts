// scripts/run_remote.sh against a real OpenSSH server: sshd on 127.0.0.1 at a
// free port, a throwaway host key, client key, known_hosts and ssh_config,
// and a throwaway remote run root. Only loopback is ever contacted.
// Without Debian's openssh-server (and rsync) these tests fail, never skip:
// .ci/run installs them.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { hostname, tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../src/native.js';
import { tempDir } from './helpers.js';

const ROOT = packageRoot();
const SCRIPT = join(ROOT, 'scripts', 'run_remote.sh');
const SSHD = '/usr/sbin/sshd';
const DATE = '2026-01-02';

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((res) => {
    const c = createConnection({ host: '127.0.0.1', port });
    c.on('connect', () => {
      c.destroy();
      res(true);
    });
    c.on('error', () => res(false));
  });
}

function sh(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/**
 * Runs a run_remote.sh as users do, without a shell, with a bounded time.
 * Asynchronously: a run takes minutes under load, and a test worker blocked
 * that long misses its own RPC deadlines.
 */
function runScript(script: string, args: string[], env: NodeJS.ProcessEnv = {}, timeout = 60_000) {
  return new Promise<{ code: number | null; stdout: string; stderr: string; signal: NodeJS.Signals | null }>((res) => {
    const p = spawn('bash', [script, ...args], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      cwd: tempDir(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGTERM'), timeout);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      res({ code, stdout, stderr, signal });
    });
  });
}

const runRemote = (args: string[], env: NodeJS.ProcessEnv = {}, timeout = 60_000) => runScript(SCRIPT, args, env, timeout);

let sshd: ChildProcess | undefined;
let sshdLog = '';
let dir = '';
let sshConfig = '';
let remoteRoot = '';
let artifacts = '';

const common = () => ['--ssh-config', sshConfig, '--remote-dir', remoteRoot, '--artifacts', artifacts, '--backend', 'cpu'];
const runDirs = () => {
  const base = join(artifacts, DATE, 'b3_41');
  return existsSync(base) ? readdirSync(base).sort() : [];
};

describe('run_remote through a real sshd on 127.0.0.1', () => {
  beforeAll(async () => {
    if (!existsSync(SSHD)) {
      throw new Error(`${SSHD} not found: install Debian's openssh-server and rsync (apt-get install -y --no-install-recommends openssh-server rsync); .ci/run does`);
    }
    dir = tempDir('greta-sshd-');
    remoteRoot = join(dir, 'remote-runs');
    artifacts = join(dir, 'artifacts');
    mkdirSync(remoteRoot);
    chmodSync(dir, 0o755);
    sh(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'greta-host', '-f', join(dir, 'host_ed25519')]);
    sh(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'greta-client', '-f', join(dir, 'id_ed25519')]);
    writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'id_ed25519.pub')));
    const port = await freePort();
    const refusedPort = await freePort(); // nothing listens there
    const hostKey = readFileSync(join(dir, 'host_ed25519.pub'), 'utf8').split(' ').slice(0, 2).join(' ');
    writeFileSync(join(dir, 'known_hosts'), `[127.0.0.1]:${port} ${hostKey}\n[127.0.0.1]:${refusedPort} ${hostKey}\n`);
    writeFileSync(
      join(dir, 'sshd_config'),
      [
        'ListenAddress 127.0.0.1',
        `Port ${port}`,
        `HostKey ${join(dir, 'host_ed25519')}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PermitRootLogin prohibit-password',
        'StrictModes no',
        'UsePAM no',
        // The remote environment of these tests: where node-gyp finds Node's headers,
        // and the test run's temporary directory (removed when the run ends).
        'AcceptEnv npm_config_nodedir TMPDIR',
        'LogLevel ERROR',
        '',
      ].join('\n'),
    );
    // The headers of the installed Node, as .ci/run finds them: npm ci on the "remote" builds offline.
    const prefix = dirname(dirname(process.execPath));
    const nodedir = process.env.npm_config_nodedir ?? (existsSync(join(prefix, 'include', 'node', 'node.h')) ? prefix : undefined);
    const hostBlock = (alias: string, p: number, extra: string[] = []) =>
      [
        `Host ${alias}`,
        '  HostName 127.0.0.1',
        `  Port ${p}`,
        `  User ${userInfo().username}`,
        `  IdentityFile ${join(dir, 'id_ed25519')}`,
        '  IdentitiesOnly yes',
        '  StrictHostKeyChecking yes',
        `  UserKnownHostsFile ${join(dir, 'known_hosts')}`,
        '  GlobalKnownHostsFile /dev/null',
        '  LogLevel ERROR',
        ...extra,
      ].join('\n');
    sshConfig = join(dir, 'ssh_config');
    writeFileSync(
      sshConfig,
      [
        hostBlock('greta-test', port, [`  SetEnv TMPDIR=${tmpdir()}${nodedir ? ` npm_config_nodedir=${nodedir}` : ''}`]),
        hostBlock('greta-refused', refusedPort),
        // A host whose Node headers are missing: node-gyp, run by npm ci, fails.
        hostBlock('greta-badbuild', port, [`  SetEnv TMPDIR=${tmpdir()} npm_config_nodedir=${join(dir, 'no-node-headers')}`]),
        '',
      ].join('\n'),
    );
    // sshd's privilege separation directory.
    if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    sshd = spawn(SSHD, ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
    sshd.stderr!.on('data', (d: Buffer) => (sshdLog += d.toString()));
    for (let i = 0; i < 100 && !(await accepts(port)); i++) {
      if (sshd.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!(await accepts(port))) throw new Error(`sshd did not start on 127.0.0.1:${port}: ${sshdLog}`);
  }, 30_000);

  afterAll(async () => {
    if (sshd && sshd.exitCode === null) {
      const gone = new Promise((r) => sshd!.on('exit', r));
      sshd.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
      if (sshd.exitCode === null && sshd.signalCode === null) sshd.kill('SIGKILL');
    }
    // The remote runs hold a node_modules each: removing them takes a while under load.
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  let full: Awaited<ReturnType<typeof runRemote>>;

  it('runs the device suite (--verify, cpu standing in), then the full matrix, pulls the artifacts and prints the table of a local run', async () => {
    full = await runRemote(['greta-test', DATE, ...common(), '--verify'], {}, 240_000);
    if (full.code !== 0) console.error(full.stderr, sshdLog);
    expect(full.code).toBe(0);
    const local = join(artifacts, DATE, 'b3_41', 'run-1');
    for (const p of ['p0_short', 'p4_sys', 'p6_long']) {
      for (const ext of ['jsonl', 'rows.bin', 'log']) expect(existsSync(join(local, `b3_41_${p}_E1.${ext}`))).toBe(true);
    }
    expect(existsSync(join(local, 'build.log'))).toBe(true);
    expect(readFileSync(join(local, 'b3_41_analysis.txt'), 'utf8')).toBe(full.stdout);
    // The suite ran on the host before the first trace, and its log came home.
    expect(full.stderr).toMatch(/^\[\d+\] verify: the device suite on cpu .*: ok \([\d.]+ s\)$/m);
    expect(full.stderr.indexOf('verify: the device suite')).toBeLessThan(full.stderr.indexOf('] trace 1/3'));
    expect(readFileSync(join(local, 'verify.log'), 'utf8')).toMatch(/Tests +\d+ passed/);

    const rec = JSON.parse(readFileSync(join(local, 'remote.json'), 'utf8')) as Record<string, unknown>;
    expect(rec.status).toBe('ok');
    expect(rec.commit).toBe(sh(['git', '-C', ROOT, 'rev-parse', 'HEAD']).trim());
    expect(rec.hostname).toBe(hostname());
    expect(typeof rec.gpu).toBe('string');
    expect((rec.gpu as string).length).toBeGreaterThan(0);
    expect(rec.backend).toBe('cpu');
    const verify = rec.verify as { status: string; backend: string; tests: number; passed: number; failed: number; failures: string[] };
    expect(verify).toMatchObject({ status: 'passed', backend: 'cpu', failed: 0, failures: [] });
    expect(verify.passed).toBeGreaterThan(20);
    expect(String(rec.remote_dir).startsWith(join(remoteRoot, DATE, 'b3_41'))).toBe(true);
    // The remote built the shipped tree, and nothing of it came from the working tree.
    expect(existsSync(join(String(rec.remote_dir), 'src', 'package.json'))).toBe(true);
    expect(existsSync(join(String(rec.remote_dir), 'src', 'node_modules'))).toBe(true);

    // The same matrix traced here gives the same table, row for row.
    const lt = spawnSync(
      process.execPath,
      [join(ROOT, 'dist', 'cli', 'main.js'), 'trace', '--prompt', 'p0_short,p4_sys,p6_long', '--exp', 'E1', '--backend', 'cpu', '--out', join(tempDir(), 'local.jsonl')],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(lt.status).toBe(0);
    expect(full.stdout).toBe(lt.stdout);
    expect(full.stdout).toMatch(/^\| p4_sys \| E1 \| NONE \| - \| 0 \|/m);
    expect(full.stdout.split('\n').filter((l) => /^\| p\d/.test(l))).toHaveLength(3);
  }, 300_000);

  it('--verify: one op that is wrong on the host stops the run before the traces, names the test, and brings the log home', async () => {
    // Ship a real defect: a commit of this tree whose fp32 add is off by 1e-3
    // (cpu-fp64, the oracle, is the same template in double and stays exact),
    // built on the host like any other. Its local half is this tree's dist/.
    const clone = join(dir, 'clone');
    sh(['git', 'clone', '-q', '--shared', '--no-checkout', ROOT, clone]);
    sh(['git', '-C', clone, 'checkout', '-q', '--detach', sh(['git', '-C', ROOT, 'rev-parse', 'HEAD']).trim()]);
    const cc = join(clone, 'native', 'cpu', 'cpu_backend.cc');
    const src = readFileSync(cc, 'utf8');
    const exact = 'o[i] = ap[i] + bp[i];';
    expect(src.split(exact)).toHaveLength(2);
    writeFileSync(cc, src.replace(exact, 'o[i] = ap[i] + bp[i] + (sizeof(A) == 4 ? A(1e-3) : A(0));'));
    sh(['git', '-C', clone, '-c', 'user.name=greta-test', '-c', 'user.email=greta-test@localhost', 'commit', '-q', '-am', 'fp32 add off by 1e-3']);
    sh(['cp', '-r', join(ROOT, 'dist'), join(clone, 'dist')]);
    symlinkSync(join(ROOT, 'node_modules'), join(clone, 'node_modules'));

    const art = join(dir, 'art-verify');
    const r = await runScript(
      join(clone, 'scripts', 'run_remote.sh'),
      ['greta-test', DATE, '--ssh-config', sshConfig, '--remote-dir', remoteRoot, '--artifacts', art, '--backend', 'cpu', '--verify', '--prompts', 'p0_short'],
      {},
      240_000,
    );
    if (r.code !== 8) console.error(r.stderr, sshdLog);
    expect(r.code).toBe(8);
    const last = r.stderr.trim().split('\n').at(-1)!;
    expect(last).toMatch(
      /^run_remote: verify: the device suite failed on greta-test: 1 of \d+ tests on cpu \(cpu ops on .* > embedding, add, silu_mul, kv_write\); the trace matrix did not run \(log: verify\.log\); what came back is in .*run-1$/,
    );
    expect(r.stderr).not.toMatch(/\] trace 1\/1/);
    const local = join(art, DATE, 'b3_41', 'run-1');
    expect(readFileSync(join(local, 'verify.log'), 'utf8')).toMatch(/add +rel_l2 \d\.\d+e-\d+ \(bound 1e-7\)[\s\S]*1 failed/);
    expect(readdirSync(local).filter((f) => f.endsWith('.jsonl'))).toEqual([]);
    const rec = JSON.parse(readFileSync(join(local, 'remote.json'), 'utf8')) as Record<string, unknown>;
    expect(String(rec.status)).toMatch(/^failed: verify: the device suite failed/);
    expect(rec.commit).toBe(sh(['git', '-C', clone, 'rev-parse', 'HEAD']).trim());
    expect(rec.verify).toMatchObject({ status: 'failed', backend: 'cpu', failed: 1 });
    expect((rec.verify as { failures: string[] }).failures).toEqual([expect.stringMatching(/^cpu ops on .* > embedding, add, silu_mul, kv_write$/)]);
    // Nothing was traced on the host either.
    expect(readdirSync(join(String(rec.remote_dir), 'out')).filter((f) => f.endsWith('.jsonl'))).toEqual([]);
  }, 300_000);

  it('a build that fails stops with a clear message and keeps what came back, in a new run directory', async () => {
    // --no-rsync: what came back comes by tar over ssh.
    const r = await runRemote(['greta-badbuild', DATE, ...common(), '--prompts', 'p0_short', '--no-rsync'], {}, 180_000);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/run_remote: build: the build failed .*what came back is in .*run-2$/m);
    expect(runDirs()).toEqual(['run-1', 'run-2']);
    const local = join(artifacts, DATE, 'b3_41', 'run-2');
    expect(r.stderr).toMatch(/^pulled what the host had into .*run-2$/m);
    expect(readFileSync(join(local, 'build.log'), 'utf8')).toMatch(/gyp: .*no-node-headers\/common\.gypi not found/);
    expect(existsSync(join(local, 'b3_41_p0_short_E1.jsonl'))).toBe(false);
    const rec = JSON.parse(readFileSync(join(local, 'remote.json'), 'utf8')) as Record<string, unknown>;
    expect(String(rec.status)).toMatch(/^failed: build/);
    // The earlier run is untouched.
    expect(existsSync(join(artifacts, DATE, 'b3_41', 'run-1', 'b3_41_analysis.txt'))).toBe(true);
  }, 200_000);

  it('a host that refuses the connection fails with exit 3 and leaves no run directory', async () => {
    const art = join(tempDir(), 'art');
    const r = await runRemote(['greta-refused', DATE, '--ssh-config', sshConfig, '--remote-dir', remoteRoot, '--artifacts', art, '--prompts', 'p0_short'], {}, 60_000);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/Connection refused/);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(/^run_remote: connecting: ssh to greta-refused failed \(exit 255/);
    expect(existsSync(art)).toBe(false);
  }, 90_000);

  it('hostile arguments fail with one line naming the value, and nothing runs', async () => {
    const t = tempDir();
    const x = join(t, 'x');
    const y = join(t, 'y');
    const before = readdirSync(remoteRoot).sort();
    const cases: [string[], RegExp][] = [
      [[`a;touch ${x}`, DATE], /^run_remote: HOST: 'a;touch .*\/x' is not a host \(allowed: /],
      [['greta-test', DATE, '--block', `a;touch ${x}`], /^run_remote: --block: 'a;touch .*\/x' is not a block name \(allowed: /],
      [['greta-test', DATE, '--prompts', 'p0_short,p4 sys'], /^run_remote: --prompts: unknown prompt 'p4 sys' \(allowed: /],
      [['greta-test', `$(touch ${y})`], /^run_remote: DATE: '\$\(touch .*\/y\)' is not a date \(allowed: YYYY-MM-DD/],
      [['greta-test', DATE, '--remote-dir', `$(touch ${y})`], /^run_remote: --remote-dir: .* is not a remote directory/],
      [['greta-test', DATE, '--model', `synthetic:tiny\`touch ${x}\``], /^run_remote: --model: .* is not a model/],
      [['greta test', DATE], /^run_remote: HOST: 'greta test' is not a host/],
      [['-oProxyCommand=touch', DATE], /^run_remote: Unknown option '-o'/],
      [['greta-test', DATE, '--verify', '--no-verify'], /^run_remote: --verify and --no-verify: give one of them, not both$/],
    ];
    for (const [args, want] of cases) {
      const r = await runRemote([...args, '--ssh-config', sshConfig, '--artifacts', join(t, 'art')]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(want);
    }
    const env = await runRemote(['greta-test', DATE, '--ssh-config', sshConfig], { GRETA_TRACE_STAGE_LAYERS: `0;touch ${x}` });
    expect(env.code).toBe(2);
    expect(env.stderr.trim()).toMatch(/^run_remote: environment: GRETA_TRACE_STAGE_LAYERS='0;touch .*' cannot be passed/);
    expect(existsSync(x) || existsSync(y)).toBe(false);
    expect(existsSync(join(t, 'art'))).toBe(false);
    expect(readdirSync(remoteRoot).sort()).toEqual(before);
  }, 90_000);
});

describe('run_remote --dry-run', () => {
  it('prints every command, sbatch and srun with --slurm, and runs none', async () => {
    // Every tool a run would start leaves a mark if started at all.
    const t = tempDir();
    const bin = join(t, 'bin');
    const marks = join(t, 'marks');
    mkdirSync(bin);
    for (const tool of ['ssh', 'rsync', 'scp', 'git', 'tar', 'sbatch', 'srun', 'npm']) {
      writeFileSync(join(bin, tool), `#!/bin/sh\necho ${tool} >> ${marks}\nexit 1\n`);
      chmodSync(join(bin, tool), 0o755);
    }
    const art = join(t, 'art');
    const r = await runRemote(
      ['nohost.invalid', DATE, '--slurm', '--partition', 'mi300x', '--backend', 'hip', '--gpu-targets', 'gfx942', '--dry-run', '--artifacts', art],
      { PATH: `${bin}:${process.env.PATH}`, GRETA_TRACE_STAGE_LAYERS: '0,1,2,15,31' },
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(existsSync(marks)).toBe(false);
    expect(existsSync(art)).toBe(false);
    const out = r.stdout;
    expect(out).toMatch(/^ssh .* -- nohost\.invalid 'if test -e /m);
    expect(out).toMatch(/^git -C .* archive --format=tar HEAD \| ssh /m);
    expect(out).toMatch(/^# \d+\. build: npm ci --no-audit --no-fund --prefer-offline, or npm install if npm ci refuses the lockfile/m);
    expect(out).toMatch(/ - ci build\.log'$/m);
    expect(out).toMatch(/sbatch --wait --parsable .*--gpus=1 .*--partition=mi300x .*job\.sbatch/);
    expect(out).toMatch(/submit --gpus=1 --time=01:00:00 --partition=mi300x'$/m);
    expect(out).toMatch(/^srun --ntasks=1 sh \.\/steps\.sh \. - run build-hip\.log -- npm run build:hip -- --CDGPU_TARGETS=gfx942$/m);
    // The device suite after the build, before the first trace.
    expect(out).toMatch(/^srun --ntasks=1 sh \.\/steps\.sh \. - verify verify\.log hip$/m);
    expect(out.indexOf(' verify verify.log hip')).toBeLessThan(out.indexOf(' run b3_41_p0_short_E1.log'));
    for (const p of ['p0_short', 'p4_sys', 'p6_long']) {
      expect(out).toContain(
        `srun --ntasks=1 sh ./steps.sh . - run b3_41_${p}_E1.log GRETA_TRACE_STAGE_LAYERS=0,1,2,15,31 -- npm run --silent trace -- --prompt ${p} --exp E1 --model synthetic:tiny --backend hip --out ../out/b3_41_${p}_E1.jsonl`,
      );
    }
    expect(out).toMatch(/^rsync -a -e 'ssh .*' nohost\.invalid:gretacore-runs\/2026-01-02\/b3_41\/[^/]+\/out\/ .*\/art\/2026-01-02\/b3_41\/run-1\/$/m);
    expect(out).toMatch(/ analyze .*b3_41_p0_short_E1\.jsonl .*b3_41_p6_long_E1\.jsonl$/m);
  });

  it('without --slurm prints the ssh steps of each trace', async () => {
    const r = await runRemote(['user@10.0.0.7', DATE, '--prompts', 'p4_sys', '--exp', 'E1,E0', '--port', '2222', '--dry-run', '--artifacts', join(tempDir(), 'a')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ssh .* -p 2222 -- user@10\.0\.0\.7 'sh gretacore-runs\/.* - run build-hip\.log -- npm run build:hip'$/m);
    expect(r.stdout).toContain('run b3_41_p4_sys_E0.log -- npm run --silent trace -- --prompt p4_sys --exp E0 ');
    expect(r.stdout).not.toContain('sbatch');
    // --backend hip verifies by default: the device suite between build:hip and the traces.
    expect(r.stdout).toMatch(/^# \d+\. verify: the device suite on hip .*a failure stops the run before the traces\n.* - verify verify\.log hip'$/m);
    expect(r.stdout.indexOf(' verify verify.log hip')).toBeGreaterThan(r.stdout.indexOf('npm run build:hip'));
    expect(r.stdout.indexOf(' verify verify.log hip')).toBeLessThan(r.stdout.indexOf('run b3_41_p4_sys_E1.log'));
    const skipped = await runRemote(['user@10.0.0.7', DATE, '--no-verify', '--dry-run', '--artifacts', join(tempDir(), 'a')]);
    expect(skipped.code).toBe(0);
    expect(skipped.stdout).not.toContain('verify');
    const cpu = await runRemote(['user@10.0.0.7', DATE, '--backend', 'cpu', '--dry-run', '--artifacts', join(tempDir(), 'a')]);
    expect(cpu.stdout).not.toContain('verify');
  });

  it('--help prints the usage', async () => {
    const r = await runRemote(['--help']);
    expect(r.code).toBe(0);
    for (const f of ['--prompts', '--exp', '--model', '--block', '--backend', '--ssh-config', '--remote-path', '--slurm', '--dry-run', '--verify', '--no-verify']) {
      expect(r.stdout).toContain(f + ' ');
    }
  });
});
