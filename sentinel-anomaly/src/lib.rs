//! Anomaly scoring and behaviour detection (issue 6).
