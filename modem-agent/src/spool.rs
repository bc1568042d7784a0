//! A directory of files for what the agent received but is on no SIM: SMS the modem
//! delivered directly (`+CMT`) and delivery reports (`+CDS`). Each is written and synced
//! before it is handed on, and removed only after the broker confirmed it.
//!
//! Blocking file I/O on purpose: a few hundred bytes, rarely, on a Pi's SD card; the
//! agent has nothing else to do while it waits.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use smsgate_shared::queue::edge::EdgeEvent;
use tracing::warn;

pub struct Spool {
    dir: PathBuf,
    counter: AtomicU64,
}

/// What a restart finds in the spool.
#[derive(Default)]
pub struct Spooled {
    /// Raw SMS-DELIVER PDUs, to be reassembled again.
    pub pdus: Vec<(PathBuf, String)>,
    pub events: Vec<(PathBuf, EdgeEvent)>,
}

impl Spool {
    pub fn open(dir: &Path) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        Ok(Spool {
            dir: dir.to_owned(),
            counter: AtomicU64::new(0),
        })
    }

    pub fn save_pdu(&self, pdu: &str) -> io::Result<PathBuf> {
        self.write("pdu", pdu.as_bytes())
    }

    pub fn save_event(&self, event: &EdgeEvent) -> io::Result<PathBuf> {
        self.write("json", &event.to_json())
    }

    /// Write to a temporary name, sync, rename: a power cut leaves either the whole file
    /// or none (a `.tmp` that `load` ignores).
    fn write(&self, ext: &str, bytes: &[u8]) -> io::Result<PathBuf> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{stamp:024}-{n:06}.{ext}"));
        let tmp = path.with_extension("tmp");
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        Ok(path)
    }

    pub fn load(&self) -> io::Result<Spooled> {
        let mut paths: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        paths.sort();
        let mut spooled = Spooled::default();
        for path in paths {
            match path.extension().and_then(|e| e.to_str()) {
                Some("pdu") => spooled
                    .pdus
                    .push((path.clone(), fs::read_to_string(&path)?)),
                Some("json") => match EdgeEvent::from_json(&fs::read(&path)?) {
                    Ok(event) => spooled.events.push((path, event)),
                    Err(e) => {
                        warn!(error = %e, path = %path.display(), "unreadable spool file left in place")
                    }
                },
                _ => {}
            }
        }
        Ok(spooled)
    }

    pub fn remove(&self, path: &Path) {
        if let Err(e) = fs::remove_file(path) {
            warn!(error = %e, path = %path.display(), "could not remove a published spool file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spooled_files_come_back_in_order_and_go_once_removed() {
        let dir = std::env::temp_dir().join(format!("smsgate-spool-test-{}", std::process::id()));
        let spool = Spool::open(&dir).unwrap();
        let event = EdgeEvent::DeliveryReportV1 {
            sim_id: 1,
            reference: 3,
            recipient: "+85212345678".into(),
            delivered: true,
            status: 0,
            at: chrono::Utc::now(),
        };
        let a = spool.save_pdu("0791AA").unwrap();
        let b = spool.save_event(&event).unwrap();
        let loaded = spool.load().unwrap();
        assert_eq!(loaded.pdus, vec![(a.clone(), "0791AA".to_owned())]);
        assert_eq!(loaded.events, vec![(b.clone(), event)]);
        spool.remove(&a);
        spool.remove(&b);
        let loaded = spool.load().unwrap();
        assert!(loaded.pdus.is_empty() && loaded.events.is_empty());
        fs::remove_dir_all(dir).unwrap();
    }
}
