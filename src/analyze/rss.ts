// Peak resident memory, for --stats. Kept out of run.ts so that analyze and
// compare report their own peak without loading the model code and the addon.
import { readFileSync } from 'node:fs';

/**
 * This program's resident-set high-water mark: Linux's VmHWM, because
 * getrusage's maxrss also counts the parent's RSS at fork (as run.ts explains).
 */
export function peakRssBytes(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}
