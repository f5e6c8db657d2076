//! The live JSONL stream (`--jsonl PATH|-`): one [`Event`] per line.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};

use sentinel_audit::Event;

pub struct Output {
    writer: Option<Box<dyn Write + Send>>,
}

impl Output {
    /// No stream.
    pub fn none() -> Self {
        Self { writer: None }
    }

    /// `-` is standard output; anything else a file, appended to.
    pub fn open(target: &str) -> std::io::Result<Self> {
        let writer: Box<dyn Write + Send> = if target == "-" {
            Box::new(BufWriter::new(std::io::stdout()))
        } else {
            Box::new(BufWriter::new(
                OpenOptions::new().create(true).append(true).open(target)?,
            ))
        };
        Ok(Self {
            writer: Some(writer),
        })
    }

    pub fn write(&mut self, event: &Event) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let result = serde_json::to_writer(&mut *w, event)
            .map_err(std::io::Error::from)
            .and_then(|()| w.write_all(b"\n"));
        if let Err(e) = result {
            tracing::error!("writing the event stream failed: {e}");
        }
    }

    pub fn flush(&mut self) {
        if let Some(w) = self.writer.as_mut() {
            let _ = w.flush();
        }
    }
}
