//! Hand-written logs of one thread, after a built script's header: how the tests of the log
//! format feed the reader the lines bpftrace would write.

use bthost::calls::decode_log;
use bthost::registry::{Registry, SearchPaths};
use bthost_plugin_api::{Event, Phase};

use crate::scratch;

/// The id of `function`'s record of phase `phase` in the built script's schema.
pub fn record_id(built: &bthost::compose::Built, function: &str, phase: Phase) -> u32 {
    built
        .schema
        .records
        .iter()
        .find(|r| r.function == function && r.phase == phase)
        .unwrap_or_else(|| panic!("{function}"))
        .id
}

/// Decodes `body` (records and END dump lines of thread 0x65 of process 0x64) after the
/// script's header, as the log bpftrace writes; returns the summary and the events.
pub fn decode_thread_log(
    built: &bthost::compose::Built,
    name: &str,
    body: &str,
) -> (bthost::decode::Stats, bthost::log::Diagnostics, Vec<Event>) {
    decode_thread_log_in_format(built, name, body, built.schema.format())
}

/// [`decode_thread_log`] with a header of log format `format` (the schema's hash does not
/// cover it: an older bthost's script differs only there).
pub fn decode_thread_log_in_format(
    built: &bthost::compose::Built,
    name: &str,
    body: &str,
    format: u32,
) -> (bthost::decode::Stats, bthost::log::Diagnostics, Vec<Event>) {
    let mut log = String::from("Attaching 9 probes...\n");
    log.push_str(&built.schema.to_text().replacen(
        &format!("#bthost {} ", built.schema.format()),
        &format!("#bthost {format} "),
        1,
    ));
    log.push_str("T 64 65 worker\n");
    log.push_str(body);
    let path = scratch(name).join("run.log");
    std::fs::write(&path, log).unwrap();
    let reg = Registry::discover(&SearchPaths::standard(&[]), true);
    let mut events = Vec::new();
    let (stats, diag, _) = decode_log(&reg, &path, None, |_, evs| events.append(evs)).unwrap();
    (stats, diag, events)
}
