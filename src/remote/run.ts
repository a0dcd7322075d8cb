// Runs (or, with --dry-run, prints) the commands of plan.ts in order: install
// the remote half, preflight, ship HEAD, build, trace matrix (or one Slurm
// job), pull, analyze. Every process is spawned from an argument vector;
// none goes through a local shell.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { RemoteOptions } from './options.js';
import {
  analysisName,
  buildHip,
  installCommand,
  localTraceFiles,
  matrix,
  NPM_CI,
  remoteLayout,
  rsyncArgv,
  sbatchArgs,
  shJoin,
  shq,
  slurmJob,
  sshArgv,
  stepCommand,
  traceArgs,
  VERIFY_LOG,
  VERIFY_REPORT,
  verifyArgs,
  type RemoteLayout,
} from './plan.js';

/** A failed run: the message is printed as one line, the code is the exit status. */
export class RemoteFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export const EXIT = { ssh: 3, tool: 4, build: 5, trace: 6, pull: 7, verify: 8, other: 1 } as const;

/** What the device suite's report (vitest's JSON, pulled home) says. */
export interface VerifyVerdict {
  tests: number;
  passed: number;
  failed: number;
  /** Full names of the failed tests. */
  failures: string[];
}

export function readVerifyReport(file: string): VerifyVerdict | undefined {
  try {
    const r = JSON.parse(readFileSync(file, 'utf8')) as {
      numTotalTests: number;
      numPassedTests: number;
      numFailedTests: number;
      testResults: {
        assertionResults: { ancestorTitles?: string[]; title: string; fullName: string; status: string }[];
        status: string;
        message?: string;
        name: string;
      }[];
    };
    const failures = r.testResults.flatMap((f) => {
      const tests = f.assertionResults
        .filter((a) => a.status === 'failed')
        .map((a) => (a.ancestorTitles ? [...a.ancestorTitles, a.title].join(' > ') : a.fullName));
      // A file that fails before its tests run (e.g. no GPU answers) has no failed test of its own.
      return tests.length || f.status !== 'failed' ? tests : [`${f.name.replace(/^.*\/test\//, 'test/')}: ${(f.message ?? '').split('\n')[0]}`];
    });
    return { tests: r.numTotalTests, passed: r.numPassedTests, failed: Math.max(r.numFailedTests, failures.length), failures };
  } catch {
    return undefined;
  }
}

interface Cmd {
  argv: string[];
  stdinFile?: string;
  stdinText?: string;
  pipeFrom?: string[];
  pipeTo?: string[];
  capture?: boolean;
  /** Print the child's stderr (default); off for best-effort steps. */
  quiet?: boolean;
}

function display(c: Cmd): string {
  let s = shJoin(c.argv);
  if (c.pipeFrom) s = `${shJoin(c.pipeFrom)} | ${s}`;
  if (c.pipeTo) s = `${s} | ${shJoin(c.pipeTo)}`;
  if (c.stdinFile) s += ` < ${shq(c.stdinFile)}`;
  if (c.stdinText !== undefined) s += ` <<'EOF'\n${c.stdinText}EOF`;
  return s;
}

interface Result {
  code: number;
  stdout: string;
  /** Which process of a pipe failed first: 'from', 'main' or 'to'. */
  failed?: 'from' | 'main' | 'to';
}

/** The exit status ('exit', not 'close': a pipe's stream handed to the next process stays open here). */
function exitOf(p: ReturnType<typeof spawn>): Promise<number> {
  return new Promise((res) => {
    p.on('error', () => res(127));
    p.on('exit', (code, signal) => res(code ?? (signal ? 128 : 1)));
  });
}

async function execCmd(c: Cmd): Promise<Result> {
  const err = c.quiet ? 'ignore' : 'inherit';
  let from: ReturnType<typeof spawn> | undefined;
  if (c.pipeFrom) from = spawn(c.pipeFrom[0]!, c.pipeFrom.slice(1), { stdio: ['ignore', 'pipe', err] });
  const stdin = from ? from.stdout! : c.stdinText !== undefined ? 'pipe' : c.stdinFile ? 'pipe' : 'ignore';
  const main = spawn(c.argv[0]!, c.argv.slice(1), { stdio: [stdin, c.capture || c.pipeTo ? 'pipe' : 'inherit', err] });
  if (c.stdinText !== undefined) main.stdin!.end(c.stdinText);
  else if (c.stdinFile) main.stdin!.end(readFileSync(c.stdinFile));
  main.stdin?.on('error', () => {});
  let to: ReturnType<typeof spawn> | undefined;
  if (c.pipeTo) to = spawn(c.pipeTo[0]!, c.pipeTo.slice(1), { stdio: [main.stdout!, 'inherit', err] });
  if (from) from.stdout!.destroy(); // the child has its own copy
  if (to) main.stdout!.destroy();
  let stdout = '';
  const drained = c.capture
    ? new Promise<void>((res) => {
        main.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
        main.stdout!.on('close', () => res());
      })
    : Promise.resolve();
  const [fromCode, mainCode, toCode] = await Promise.all([from ? exitOf(from) : 0, exitOf(main), to ? exitOf(to) : 0, drained]);
  if (fromCode !== 0) return { code: fromCode, stdout, failed: 'from' };
  if (mainCode !== 0) return { code: mainCode, stdout, failed: 'main' };
  if (toCode !== 0) return { code: toCode, stdout, failed: 'to' };
  return { code: 0, stdout };
}

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((d) => d && existsSync(join(d, cmd)));
}

export function newRemoteRunId(now = new Date()): string {
  return `${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
}

/** The next run-N under DIR/DATE/BLOCK that does not exist (mkdir makes it ours). */
function nextLocalDir(base: string, create: boolean): string {
  const taken = existsSync(base) ? readdirSync(base).map((n) => /^run-(\d+)$/.exec(n)?.[1]).filter((n) => n !== undefined).map(Number) : [];
  let n = Math.max(0, ...taken) + 1;
  if (!create) return join(base, `run-${n}`);
  mkdirSync(base, { recursive: true });
  for (;;) {
    const dir = join(base, `run-${n}`);
    try {
      mkdirSync(dir);
      return dir;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      n++;
    }
  }
}

interface Preflight {
  facts: Record<string, string>;
  gpu: string;
}

function parsePreflight(text: string): Preflight {
  const [head, ...gpu] = text.split(/^--- gpu$/m);
  const facts: Record<string, string> = {};
  for (const line of (head ?? '').split('\n')) {
    const m = /^([a-z_]+)=(.*)$/.exec(line);
    if (m) facts[m[1]!] = m[2]!;
  }
  return { facts, gpu: gpu.join('').trim() || 'none' };
}

export interface RemoteContext {
  /** The package root: its git HEAD is shipped, its dist/ analyzes. */
  root: string;
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

export async function runRemote(o: RemoteOptions, ctx: RemoteContext): Promise<void> {
  const dry = o.dryRun;
  const runId = newRemoteRunId();
  const l: RemoteLayout = remoteLayout(o, runId);
  const localBase = join(o.artifacts, o.date, o.block);
  const ssh = sshArgv(o);
  const stepsFile = join(ctx.root, 'scripts', 'remote', 'steps.sh');
  const runStep = (log: string, argv: string[]) => stepCommand(o, l, 'run', [log, '--', ...argv]);
  let n = 0;
  let localDir: string | undefined;
  const record: Record<string, unknown> = {
    host: o.host,
    date: o.date,
    block: o.block,
    run_id: runId,
    remote_dir: l.dir,
    backend: o.backend,
    model: o.model,
    prompts: o.prompts,
    exp: o.exp,
    trace_env: Object.fromEntries(o.traceEnv),
    slurm: o.slurm,
    verify: o.verify
      ? { status: 'pending', backend: o.backend, log: VERIFY_LOG }
      : { status: 'skipped', reason: o.noVerify ? '--no-verify' : 'off for --backend cpu (--verify runs it)' },
  };
  const verdict = (status: string) => {
    const v = localDir ? readVerifyReport(join(localDir, VERIFY_REPORT)) : undefined;
    record.verify = { status, backend: o.backend, log: VERIFY_LOG, ...(v ?? {}) };
    return v;
  };
  const saveRecord = () => {
    if (localDir) writeFileSync(join(localDir, 'remote.json'), JSON.stringify(record, null, 2) + '\n');
  };

  async function step(title: string, c: Cmd, fail: (r: Result) => RemoteFailure): Promise<Result> {
    n++;
    if (dry) {
      ctx.stdout(`# ${n}. ${title}\n${display(c)}\n`);
      return { code: 0, stdout: '' };
    }
    ctx.stderr(`[${n}] ${title}`);
    const t0 = performance.now();
    const r = await execCmd(c);
    const s = ((performance.now() - t0) / 1000).toFixed(1);
    if (r.code !== 0) {
      ctx.stderr(`[${n}] ${title}: failed after ${s} s`);
      throw fail(r);
    }
    ctx.stderr(`[${n}] ${title}: ok (${s} s)`);
    return r;
  }

  /** Classifies an ssh command's failure: 255 is ssh's own (connection, auth, host key). */
  const sshFail = (what: string, code: number, remoteCodes: Record<number, [string, number]> = {}) => (r: Result) => {
    if (r.failed === 'from' || r.failed === 'to') return new RemoteFailure(`${what}: local ${r.failed === 'from' ? 'source' : 'sink'} command failed (exit ${r.code})`, EXIT.other);
    if (r.code === 255) return new RemoteFailure(`${what}: ssh to ${o.host} failed (exit 255: unreachable, refused, unknown host key or not authorized; see ssh's message above)`, EXIT.ssh);
    if (r.code === 127 && !onPath('ssh')) return new RemoteFailure(`${what}: ssh is not installed here`, EXIT.ssh);
    const known = remoteCodes[r.code];
    if (known) return new RemoteFailure(`${what}: ${known[0]} (exit ${r.code})`, known[1]);
    return new RemoteFailure(`${what}: failed on ${o.host} (exit ${r.code})`, code);
  };

  // Local facts first: nothing to execute for them.
  let commit = 'HEAD';
  if (!dry) {
    for (const t of ['ssh', 'tar', 'git']) if (!onPath(t)) throw new RemoteFailure(`${t} is not installed here (run_remote needs ssh, tar and git locally)`, EXIT.tool);
    const rev = await execCmd({ argv: ['git', '-C', ctx.root, 'rev-parse', '--verify', 'HEAD'], capture: true, quiet: true });
    if (rev.code !== 0) throw new RemoteFailure(`${ctx.root} is not a git checkout with a commit: run_remote ships git HEAD`, EXIT.other);
    commit = rev.stdout.trim();
    const st = await execCmd({ argv: ['git', '-C', ctx.root, 'status', '--porcelain', '--untracked-files=no'], capture: true, quiet: true });
    record.commit = commit;
    record.local_uncommitted_changes = st.stdout.trim() !== '';
    if (st.stdout.trim()) ctx.stderr(`note: uncommitted changes in ${ctx.root} are not shipped; the host gets commit ${commit.slice(0, 12)} (git archive HEAD)`);
  } else {
    ctx.stdout(`# run_remote --dry-run: the commands of this run, in order; nothing is executed.\n# run directory on ${o.host}: ${l.dir}\n`);
  }

  await step(`new run directory ${l.dir} on ${o.host}, with the remote half (steps.sh)`, { argv: [...ssh, installCommand(l)], stdinFile: stepsFile }, sshFail('connecting', EXIT.ssh, { 12: ['the run directory exists already', EXIT.other] }));
  const pre = await step(
    `preflight: tools, hostname, GPU`,
    { argv: [...ssh, stepCommand(o, l, 'preflight', [o.backend, o.slurm ? '1' : '0'])], capture: true },
    sshFail('preflight', EXIT.tool, { 10: ['a tool is missing on the host (see the greta-remote line above)', EXIT.tool] }),
  );
  const info = parsePreflight(pre.stdout);
  localDir = nextLocalDir(localBase, !dry);
  if (dry) ctx.stdout(`# local run directory: ${localDir}\n`);
  Object.assign(record, {
    local_dir: localDir,
    hostname: info.facts.hostname,
    os: info.facts.os,
    node: info.facts.node,
    npm: info.facts.npm,
    toolchain: info.facts.toolchain,
    gpu: info.gpu,
    started_at: new Date().toISOString(),
    status: 'running',
  });
  if (!dry) {
    writeFileSync(join(localDir, 'preflight.txt'), pre.stdout);
    saveRecord();
    ctx.stderr(`    ${info.facts.hostname}: node ${info.facts.node}, toolchain ${info.facts.toolchain}, GPU: ${info.gpu.split('\n')[0]}`);
  }

  const pull = async (bestEffort: boolean) => {
    const viaRsync = !o.noRsync && onPath('rsync') && (dry || info.facts.rsync === 'yes');
    const c: Cmd = viaRsync
      ? { argv: rsyncArgv(o, l, localDir!), quiet: bestEffort }
      : { argv: [...ssh, stepCommand(o, l, 'pack')], pipeTo: ['tar', '-xf', '-', '-C', localDir!], quiet: bestEffort };
    if (bestEffort) {
      const r = await execCmd(c);
      ctx.stderr(r.code === 0 ? `pulled what the host had into ${localDir}` : `could not pull from ${o.host} (exit ${r.code})`);
      return;
    }
    await step(`pull ${l.dir}/out/ into ${localDir}${viaRsync ? '' : ' (tar over ssh: no rsync on both sides)'}`, c, sshFail('pulling the artifacts', EXIT.pull));
  };

  try {
    await step(
      `ship ${commit === 'HEAD' ? 'HEAD' : commit.slice(0, 12)} (git archive: only committed files travel)`,
      { pipeFrom: ['git', '-C', ctx.root, 'archive', '--format=tar', commit], argv: [...ssh, stepCommand(o, l, 'unpack')] },
      sshFail('shipping the repository', EXIT.other),
    );
    const buildFail = sshFail('build', EXIT.build, { 11: ['the build failed (log tail above; build logs are in the run directory)', EXIT.build] });
    await step(
      `build: ${NPM_CI.join(' ')}, or npm install if npm ci refuses the lockfile (log: build.log)`,
      { argv: [...ssh, stepCommand(o, l, 'ci', ['build.log'])] },
      buildFail,
    );
    if (o.slurm) {
      const job = slurmJob(o, l);
      await step('Slurm job script (job.sbatch)', { argv: [...ssh, stepCommand(o, l, 'put', ['job.sbatch'])], stdinText: job }, sshFail('writing the job script', EXIT.other));
      await step(
        `submit and wait: sbatch --wait --parsable --output=${l.dir}/out/slurm-%j.out ${sbatchArgs(o).join(' ')} ${l.dir}/job.sbatch ` +
          `(${o.backend === 'cpu' ? '' : 'build:hip, '}${o.verify ? 'the device suite, ' : ''}${matrix(o).length} traces with srun)`,
        { argv: [...ssh, stepCommand(o, l, 'submit', sbatchArgs(o))] },
        sshFail('Slurm job', EXIT.trace, { 11: ['the Slurm job failed (see slurm-*.out and the logs in the run directory)', EXIT.trace] }),
      );
    } else {
      const hip = o.backend === 'hip' || (o.backend === 'auto' && (dry || info.facts.toolchain !== 'none'));
      if (hip) {
        const when = o.backend === 'auto' ? ' (auto: only when the host has hipcc or nvcc)' : '';
        await step(`build: ${buildHip(o).join(' ')}${dry ? when : ''} (log: build-hip.log)`, { argv: [...ssh, runStep('build-hip.log', buildHip(o))] }, buildFail);
      }
      if (o.verify) {
        await step(
          `verify: the device suite on ${o.backend} (npm run test:gpu: every op against cpu-fp64, invariance, E1; log: ${VERIFY_LOG}); a failure stops the run before the traces`,
          { argv: [...ssh, stepCommand(o, l, 'verify', verifyArgs(o))] },
          sshFail('verify', EXIT.verify, { 13: [`the device suite failed on ${o.host}`, EXIT.verify] }),
        );
        record.verify = { status: 'passed', backend: o.backend, log: VERIFY_LOG };
        if (!dry) saveRecord();
      }
      const m = matrix(o);
      for (const [i, e] of m.entries()) {
        await step(
          `trace ${i + 1}/${m.length}: ${e.prompt} ${e.exp} -> ${e.name}.jsonl`,
          { argv: [...ssh, stepCommand(o, l, 'run', traceArgs(o, e))] },
          sshFail(`trace ${e.prompt} ${e.exp}`, EXIT.trace, { 11: [`the trace failed (log tail above; ${e.name}.log)`, EXIT.trace] }),
        );
      }
    }
    await pull(false);
  } catch (e) {
    if (!dry && e instanceof RemoteFailure && localDir) {
      await pull(true);
      let failure = e;
      if (o.verify) {
        // The suite's report came home with the pull: name what failed. (In a
        // Slurm job a failed suite ends the job before the traces, as a job failure.)
        const v = verdict('failed');
        if (v && v.failed > 0) {
          const shown = v.failures.slice(0, 3).join('; ') + (v.failures.length > 3 ? `; and ${v.failures.length - 3} more` : '');
          failure = new RemoteFailure(
            `verify: the device suite failed on ${o.host}: ${v.failed} of ${v.tests} tests on ${o.backend} (${shown}); the trace matrix did not run (log: ${VERIFY_LOG})`,
            EXIT.verify,
          );
        } else if (v) {
          verdict('passed');
        } else if (e.exitCode === EXIT.verify) {
          failure = new RemoteFailure(`${e.message}; the trace matrix did not run (log: ${VERIFY_LOG})`, EXIT.verify);
        } else {
          record.verify = { status: 'not run', backend: o.backend };
        }
      }
      record.status = `failed: ${failure.message}`;
      record.finished_at = new Date().toISOString();
      saveRecord();
      throw new RemoteFailure(`${failure.message}; what came back is in ${localDir}`, failure.exitCode);
    }
    throw e;
  }
  if (o.verify && !dry) verdict('passed');

  if (o.slurm && !dry) {
    const gpuTxt = join(localDir, 'gpu.txt');
    if (existsSync(gpuTxt)) {
      const t = readFileSync(gpuTxt, 'utf8');
      record.gpu = t.replace(/^hostname=.*\n/, '').trim() || 'none';
      record.hostname = /^hostname=(.*)$/m.exec(t)?.[1] ?? record.hostname;
    }
  }

  const files = localTraceFiles(o, localDir);
  const out = join(localDir, analysisName(o));
  const missing = dry ? [] : files.filter((f) => !existsSync(f) || statSync(f).size === 0);
  if (missing.length) {
    record.status = `failed: missing ${missing.join(', ')}`;
    saveRecord();
    throw new RemoteFailure(`the pull did not bring ${missing.join(', ')}; what came back is in ${localDir}`, EXIT.pull);
  }
  const an = await step(
    `analyze (table -> ${out})`,
    { argv: [process.execPath, join(ctx.root, 'dist', 'cli', 'main.js'), 'analyze', ...files], capture: true },
    (r) => new RemoteFailure(`analyze failed (exit ${r.code})`, EXIT.pull),
  );
  if (dry) return;
  writeFileSync(out, an.stdout);
  record.status = 'ok';
  record.finished_at = new Date().toISOString();
  saveRecord();
  ctx.stderr(`artifacts: ${localDir}`);
  ctx.stdout(an.stdout);
}
