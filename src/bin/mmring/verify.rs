//! `mmring verify [--repair]`: check a ring file record by record, and optionally
//! make it usable again. The checking and repairing are the library's
//! ([`mmring::verify`], [`mmring::repair`]); this prints their reports.
//!
//! Exit status: 0 clean, 1 problems found (repaired or not), 2 not a ring or
//! unreadable.

use std::fmt::Write as _;
use std::io::{self, Write};

use mmring::inspect::{Action, Finding, Report};

use crate::cli::VerifyArgs;
use crate::output::{json_string, stdout_failure};
use crate::{Failure, Outcome};

/// Verifies (or repairs) and prints one line per finding, then a summary.
pub(crate) fn run(args: &VerifyArgs) -> Outcome {
    let path = &args.path;
    let unverifiable = |error| Failure::Unverifiable {
        path: path.clone(),
        error,
    };
    let report = if args.repair {
        match mmring::repair(path) {
            Ok(report) => report,
            // A damaged header is reported, not repaired: the same finding verify
            // makes, and the same exit status.
            Err(mmring::Error::Corrupt { .. }) => mmring::verify(path).map_err(unverifiable)?,
            Err(error) => return Err(unverifiable(error)),
        }
    } else {
        mmring::verify(path).map_err(unverifiable)?
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let text = if args.json {
        render_json(&report)
    } else {
        render(&report)
    };
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        // A reader that stopped reading (`| head -1`) does not change the verdict,
        // which the exit status carries.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {}
        Err(error) => return Err(stdout_failure(error)),
    }
    if report.is_clean() {
        return Ok(());
    }
    Err(Failure::ProblemsFound {
        path: path.clone(),
        count: report.problems.len(),
        repaired: report.repaired,
        header: !report.records_checked,
    })
}

/// The report as text: one line per problem and note, then a summary line.
fn render(report: &Report) -> String {
    let mut text = String::new();
    for problem in &report.problems {
        let _ = writeln!(
            text,
            "problem at offset {} ({}): {}{}",
            problem.offset,
            problem.field,
            problem.message,
            action_text(problem, report.repaired)
        );
    }
    for note in &report.notes {
        let _ = writeln!(
            text,
            "note at offset {} ({}): {}",
            note.offset, note.field, note.message
        );
    }
    if !report.records_checked {
        text.push_str("records not checked: the header can't be trusted (it is not repaired)\n");
        return text;
    }
    let verdict = match (report.is_clean(), report.repaired) {
        (true, _) => "clean".to_owned(),
        (false, true) => format!("{} problem(s) repaired", report.problems.len()),
        (false, false) => format!("{} problem(s)", report.problems.len()),
    };
    let _ = writeln!(
        text,
        "{verdict}: {} intact entries ({} expired, {} payload bytes) between positions {} and {}",
        report.entries, report.expired, report.entry_bytes, report.read_pos, report.write_pos
    );
    text
}

/// The report as one line of JSON.
fn render_json(report: &Report) -> String {
    let findings = |list: &[Finding]| -> String {
        let items: Vec<String> = list
            .iter()
            .map(|finding| {
                let position = finding
                    .position
                    .map_or_else(|| "null".to_owned(), |pos| pos.to_string());
                let action = match finding.action {
                    Action::Drop { start, end } => {
                        format!("{{\"drop\":{{\"start\":{start},\"end\":{end}}}}}")
                    }
                    Action::Reset { from, to } => {
                        format!("{{\"reset\":{{\"from\":{from},\"to\":{to}}}}}")
                    }
                    Action::Clear { position } => {
                        format!("{{\"clear\":{{\"position\":{position}}}}}")
                    }
                    _ => "null".to_owned(),
                };
                format!(
                    "{{\"offset\":{},\"field\":{},\"position\":{position},\"message\":{},\
                     \"action\":{action}}}",
                    finding.offset,
                    json_string(finding.field),
                    json_string(&finding.message)
                )
            })
            .collect();
        format!("[{}]", items.join(","))
    };
    format!(
        "{{\"clean\":{},\"repaired\":{},\"records_checked\":{},\"file_len\":{},\
         \"region_len\":{},\"read_pos\":{},\"write_pos\":{},\"entries\":{},\"expired\":{},\
         \"entry_bytes\":{},\"problems\":{},\"notes\":{}}}\n",
        report.is_clean(),
        report.repaired,
        report.records_checked,
        report.file_len,
        report.region_len,
        report.read_pos,
        report.write_pos,
        report.entries,
        report.expired,
        report.entry_bytes,
        findings(&report.problems),
        findings(&report.notes)
    )
}

/// What a repair did (or would do) about `finding`.
fn action_text(finding: &Finding, repaired: bool) -> String {
    match (finding.action, repaired) {
        (Action::Drop { start, end }, true) => format!("; dropped positions {start}..{end}"),
        (Action::Drop { start, end }, false) => {
            format!("; --repair drops positions {start}..{end}")
        }
        (Action::Reset { to, .. }, true) => format!("; reset to {to}"),
        (Action::Reset { to, .. }, false) => format!("; --repair resets it to {to}"),
        (Action::Clear { .. }, true) => "; zeroed".to_owned(),
        (Action::Clear { .. }, false) => "; --repair zeroes it".to_owned(),
        _ => String::new(),
    }
}
