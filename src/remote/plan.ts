// The commands of a remote run, as argument vectors. Nothing here runs
// anything: exec.ts runs these, and --dry-run prints them.
//
// Locally no shell is ever involved (spawn with argv). On the host, ssh hands
// its command string to the login shell; that string is built only by
// remoteCommand(), which single-quotes every word, and the words themselves
// are validated values (options.ts). The remote half is scripts/remote/steps.sh,
// copied into the run directory first, which never evaluates an argument.
import { join } from 'node:path';
import type { RemoteOptions } from './options.js';

/** A word as a POSIX shell reads it back unchanged: as is when plain, else single-quoted. */
export function shq(s: string): string {
  if (/^[A-Za-z0-9_./:=,+@%-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export const shJoin = (argv: readonly string[]) => argv.map(shq).join(' ');

export interface RemoteLayout {
  /** Run directory on the host, relative to the remote home or absolute. */
  dir: string;
  /** The copy of steps.sh in it. */
  steps: string;
}

export function remoteLayout(o: RemoteOptions, runId: string): RemoteLayout {
  const dir = `${o.remoteDir === '/' ? '' : o.remoteDir}/${o.date}/${o.block}/${runId}`;
  return { dir, steps: `${dir}/steps.sh` };
}

/** ssh's argv up to and including the host; the remote command string follows. */
export function sshArgv(o: RemoteOptions): string[] {
  return [...sshCommand(o), '--', o.host];
}

/** ssh and its options, without the host (rsync -e takes this joined by spaces). */
export function sshCommand(o: RemoteOptions): string[] {
  const a = ['ssh', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=20', '-o', 'ServerAliveInterval=30', '-o', 'ServerAliveCountMax=6'];
  if (o.sshConfig) a.push('-F', o.sshConfig);
  if (o.port !== undefined) a.push('-p', String(o.port));
  if (o.identity) a.push('-i', o.identity);
  return a;
}

/** `sh RUN/steps.sh RUN PATH_PREFIX STEP ARGS...` as one quoted string for ssh. */
export function stepCommand(o: RemoteOptions, l: RemoteLayout, step: string, args: string[] = []): string {
  return shJoin(['sh', l.steps, l.dir, o.remotePath ?? '-', step, ...args]);
}

/** The first command: a new run directory holding steps.sh (from stdin); refuses an existing one. */
export function installCommand(l: RemoteLayout): string {
  const d = shq(l.dir);
  return (
    `if test -e ${d}; then echo 'greta-remote: run directory exists already:' ${d} >&2; exit 12; fi; ` +
    `mkdir -p ${d} && cat > ${shq(l.steps)}`
  );
}

export interface MatrixEntry {
  prompt: string;
  exp: string;
  /** <block>_<prompt>_<exp>: the .jsonl, .rows.bin and .log share it. */
  name: string;
}

export function matrix(o: RemoteOptions): MatrixEntry[] {
  return o.prompts.flatMap((prompt) => o.exp.map((exp) => ({ prompt, exp, name: `${o.block}_${prompt}_${exp}` })));
}

/** Remote `run` step arguments: LOG [GRETA_TRACE_*=V...] -- CMD... */
export const NPM_CI = ['npm', 'ci', '--no-audit', '--no-fund', '--prefer-offline'];

export function buildHip(o: RemoteOptions): string[] {
  // CMake lists are ';'-separated; npm quotes the argument for cmake-js.
  return ['npm', 'run', 'build:hip', ...(o.gpuTargets ? ['--', `--CDGPU_TARGETS=${o.gpuTargets.join(';')}`] : [])];
}

/** The device suite's log and report in RUN/out: verify.log, and vitest's JSON report verify.json. */
export const VERIFY_LOG = 'verify.log';
export const VERIFY_REPORT = 'verify.json';

/** Remote `verify` step arguments: LOG BACKEND (the suite runs on --backend). */
export function verifyArgs(o: RemoteOptions): string[] {
  return [VERIFY_LOG, o.backend];
}

export function traceArgs(o: RemoteOptions, m: MatrixEntry): string[] {
  return [
    `${m.name}.log`,
    ...o.traceEnv.map(([k, v]) => `${k}=${v}`),
    '--',
    'npm', 'run', '--silent', 'trace', '--',
    '--prompt', m.prompt, '--exp', m.exp, '--model', o.model, '--backend', o.backend,
    '--out', `../out/${m.name}.jsonl`,
  ];
}

/** rsync of RUN/out/ into the local run directory. */
export function rsyncArgv(o: RemoteOptions, l: RemoteLayout, localDir: string): string[] {
  return ['rsync', '-a', '-e', sshCommand(o).join(' '), `${o.host}:${l.dir}/out/`, localDir + '/'];
}

/** The Slurm job: records the node's GPU, builds for it, runs the matrix with srun. */
export function slurmJob(o: RemoteOptions, l: RemoteLayout): string {
  const step = (name: string, args: string[]) => shJoin(['sh', './steps.sh', '.', o.remotePath ?? '-', name, ...args]);
  const hip = ['build-hip.log', '--', ...buildHip(o)];
  const lines = [
    '#!/bin/sh',
    `#SBATCH --job-name=greta-${o.block}`,
    `# gretacore run ${l.dir}: written by scripts/run_remote.sh`,
    'set -eu',
    'cd "${SLURM_SUBMIT_DIR:?}"',
    `srun --ntasks=1 ${step('gpuinfo', [])}`,
  ];
  if (o.backend === 'hip') lines.push(`srun --ntasks=1 ${step('run', hip)}`);
  if (o.backend === 'auto') {
    lines.push(`if srun --ntasks=1 sh -c 'command -v hipcc || command -v nvcc' >/dev/null; then srun --ntasks=1 ${step('run', hip)}; fi`);
  }
  // The device suite before any trace: set -e ends the job when it fails.
  if (o.verify) lines.push(`srun --ntasks=1 ${step('verify', verifyArgs(o))}`);
  for (const m of matrix(o)) lines.push(`srun --ntasks=1 ${step('run', traceArgs(o, m))}`);
  return lines.join('\n') + '\n';
}

export function sbatchArgs(o: RemoteOptions): string[] {
  return [
    `--gpus=${o.gpus}`,
    `--time=${o.time}`,
    ...(o.partition ? [`--partition=${o.partition}`] : []),
    ...(o.account ? [`--account=${o.account}`] : []),
  ];
}

export const analysisName = (o: RemoteOptions) => `${o.block}_analysis.txt`;
export const localTraceFiles = (o: RemoteOptions, localDir: string) => matrix(o).map((m) => join(localDir, `${m.name}.jsonl`));
