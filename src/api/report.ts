// report: the library call and `greta report` behind it.
import { timingSince, type Timing } from '../rss.js';
import { writeReport, type ReportOutput as Written } from '../report/report.js';
import { fileList, inputFlags, REPORT_OPTIONS, resolveReportOptions, type List, type ReportOptions, type SameKeys } from '../spec.js';

export interface ReportInput {
  /** The HTML file to write (.html or .htm; default report.html). */
  out?: string;
  /** A BASE trace: the page also shows each file compared with it, as `compare(base, file)`. */
  compare?: string;
  /** As analyze's tol: a pair mismatches when its MAE exceeds it; 0 (default): any bit. */
  tol?: number;
  /** Relative L2 to an oracle run beyond which a phase departed (default 1e-4). */
  oracleTol?: number;
}

export interface ReportOutput extends Written {
  timing: Timing;
}

true satisfies SameKeys<keyof ReportInput, keyof typeof REPORT_OPTIONS>;

/**
 * `greta report`: one self-contained HTML page of the files' analysis (what
 * `analyze` returns, drawn), written to `out`; returns what the page shows.
 */
export function report(files: List, input: ReportInput = {}): ReportOutput {
  return reportWith(fileList(files), resolveReportOptions(inputFlags(input, REPORT_OPTIONS)));
}

/** report with options already resolved (the CLI's flags). */
export function reportWith(files: string[], opts: ReportOptions): ReportOutput {
  const t0 = performance.now();
  const r = writeReport(files, opts);
  return { ...r, timing: timingSince(t0) };
}
