// Peak resident memory and the timing of a library call: the trace's load
// line and --stats. Its own module so that analyze and compare report it
// without loading the model code and the addon.
import { readFileSync } from 'node:fs';

/**
 * This program's resident-set high-water mark. Linux's VmHWM, because
 * getrusage's maxrss also counts the parent's RSS at fork (kept across exec):
 * a trace started from a large Python process would report that process's size.
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

/** How long a library call took, and this process's peak RSS when it returned (what --stats prints). */
export interface Timing {
  seconds: number;
  peak_rss_bytes: number;
}

/** The timing of a call that started at `t0` (performance.now()). */
export function timingSince(t0: number): Timing {
  return { seconds: (performance.now() - t0) / 1e3, peak_rss_bytes: peakRssBytes() };
}
