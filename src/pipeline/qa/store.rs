//! The `qa` table of `data_dir/osteon.db`: one row per job ([`QaRecord`]), one column per field
//! (SQL names = the record's field names, see [`COLUMNS`]). Written by the job workers, read by
//! `osteon qa`. Its own connection to the database the job queue uses (WAL allows both).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection};
use serde_json::Value;

use super::QaRecord;
use crate::pipeline::queue::DB_FILE;

/// Errors of the QA store; each names the database file.
#[derive(Debug, thiserror::Error)]
pub enum QaError {
    /// SQLite failed (open, schema, statement).
    #[error("{db}: qa table: {source}")]
    Sqlite {
        db: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A stored row does not decode into a [`QaRecord`].
    #[error("{db}: qa row of job {job}: {reason}")]
    Corrupt {
        db: PathBuf,
        job: i64,
        reason: String,
    },
}

/// Columns of the `qa` table and their SQL types, in [`QaRecord`] field order.
pub const COLUMNS: [(&str, &str); 43] = [
    ("job_id", "INTEGER PRIMARY KEY"),
    ("version", "INTEGER NOT NULL"),
    ("study_uid", "TEXT NOT NULL"),
    ("series_uid", "TEXT NOT NULL"),
    ("calling_ae", "TEXT NOT NULL"),
    ("manufacturer", "TEXT NOT NULL"),
    ("model_name", "TEXT NOT NULL"),
    ("station_name", "TEXT NOT NULL"),
    ("device_serial_number", "TEXT NOT NULL"),
    ("convolution_kernel", "TEXT NOT NULL"),
    ("kvp", "REAL"),
    ("tube_current_ma", "REAL"),
    ("exposure_mas", "REAL"),
    ("slice_thickness_mm", "REAL"),
    ("pixel_spacing_row_mm", "REAL NOT NULL"),
    ("pixel_spacing_col_mm", "REAL NOT NULL"),
    ("tilt_deg", "REAL NOT NULL"),
    ("slices", "INTEGER NOT NULL"),
    ("first_received_ms", "INTEGER"),
    ("last_received_ms", "INTEGER"),
    ("queued_ms", "INTEGER NOT NULL"),
    ("started_ms", "INTEGER NOT NULL"),
    ("queue_wait_ms", "INTEGER NOT NULL"),
    ("read_ms", "REAL NOT NULL"),
    ("segment_ms", "REAL NOT NULL"),
    ("mesh_ms", "REAL NOT NULL"),
    ("seg_write_ms", "REAL NOT NULL"),
    ("stl_write_ms", "REAL NOT NULL"),
    ("process_ms", "REAL NOT NULL"),
    ("export_ms", "REAL"),
    ("done_ms", "INTEGER"),
    ("bone_volume_ml", "REAL NOT NULL"),
    ("components", "INTEGER NOT NULL"),
    ("triangles", "INTEGER NOT NULL"),
    ("model", "TEXT NOT NULL"),
    ("model_version", "TEXT NOT NULL"),
    ("mean_confidence", "REAL"),
    ("dsc_threshold_baseline", "REAL"),
    ("noise_air_hu", "REAL"),
    ("air_anchor_hu", "REAL"),
    ("tissue_anchor_hu", "REAL"),
    ("scanner", "TEXT NOT NULL"),
    ("recorded_ms", "INTEGER NOT NULL"),
];

/// Columns that are not fields of [`QaRecord`]: the scanner key (for SQL grouping) and when the
/// row was written.
const EXTRA: [&str; 2] = ["scanner", "recorded_ms"];

/// The QA table on SQLite.
pub struct QaStore {
    db: PathBuf,
    conn: Mutex<Connection>,
}

impl QaStore {
    /// Opens (creating) the `qa` table in `data_dir/osteon.db`.
    ///
    /// Errors: [`QaError::Sqlite`] naming the file.
    pub fn open(data_dir: &Path) -> Result<QaStore, QaError> {
        let db = data_dir.join(DB_FILE);
        let err = |source| QaError::Sqlite {
            db: db.clone(),
            source,
        };
        let conn = crate::pipeline::queue::open_database(&db).map_err(err)?;
        // Schema in one write transaction: nodes and `osteon qa` opening an older table at once
        // add its missing columns one after the other, and a failure leaves the table as it was.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
        if let Err(e) = migrate(&conn) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(err(e));
        }
        conn.execute_batch("COMMIT").map_err(err)?;
        Ok(QaStore {
            db,
            conn: Mutex::new(conn),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> QaError + '_ {
        move |source| QaError::Sqlite {
            db: self.db.clone(),
            source,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T, QaError>) -> Result<T, QaError> {
        let guard = match self.conn.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&guard)
    }

    /// Stores `record`, replacing an earlier row of the same job (a retried job).
    pub fn record(&self, record: &QaRecord) -> Result<(), QaError> {
        let Value::Object(map) = serde_json::to_value(record).unwrap_or(Value::Null) else {
            return Err(QaError::Corrupt {
                db: self.db.clone(),
                job: record.job_id,
                reason: "record does not serialize".to_owned(),
            });
        };
        let values: Vec<SqlValue> = COLUMNS
            .iter()
            .map(|(name, _)| match *name {
                "scanner" => SqlValue::Text(super::table::scanner_key(record).join(" | ")),
                "recorded_ms" => SqlValue::Integer(crate::pipeline::queue::now_ms()),
                field => sql_value(map.get(field).unwrap_or(&Value::Null)),
            })
            .collect();
        let names: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
        let marks: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT OR REPLACE INTO qa ({}) VALUES ({})",
            names.join(", "),
            marks.join(", ")
        );
        self.with(|c| {
            c.execute(&sql, params_from_iter(values))
                .map(|_| ())
                .map_err(self.err())
        })
    }

    /// Records the export of job `job_id`: its duration and, when delivered everywhere, the
    /// time the results were stored at the destinations. No row (job processed before QA
    /// existed): nothing happens.
    pub fn exported(
        &self,
        job_id: i64,
        export_ms: f64,
        done_ms: Option<i64>,
    ) -> Result<(), QaError> {
        self.with(|c| {
            c.execute(
                "UPDATE qa SET export_ms = ?2, done_ms = COALESCE(?3, done_ms) WHERE job_id = ?1",
                params![job_id, export_ms, done_ms],
            )
            .map(|_| ())
            .map_err(self.err())
        })
    }

    /// Every row, by job id.
    pub fn list(&self) -> Result<Vec<QaRecord>, QaError> {
        let names: Vec<&str> = COLUMNS
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| !EXTRA.contains(n))
            .collect();
        self.with(|c| {
            let e = self.err();
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {} FROM qa ORDER BY job_id",
                    names.join(", ")
                ))
                .map_err(&e)?;
            let mut rows = stmt.query([]).map_err(&e)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(&e)? {
                let mut map = serde_json::Map::new();
                for (i, name) in names.iter().enumerate() {
                    let v: SqlValue = row.get(i).map_err(&e)?;
                    map.insert((*name).to_owned(), json_value(v));
                }
                let job = map.get("job_id").and_then(Value::as_i64).unwrap_or(-1);
                let record =
                    serde_json::from_value(Value::Object(map)).map_err(|x| QaError::Corrupt {
                        db: self.db.clone(),
                        job,
                        reason: x.to_string(),
                    })?;
                out.push(record);
            }
            Ok(out)
        })
    }
}

/// Creates the `qa` table, adds the columns a table made by an older Osteon lacks (always
/// nullable ones, so the old rows read back as `None`), then the scanner index.
fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    let columns: Vec<String> = COLUMNS.iter().map(|(n, t)| format!("{n} {t}")).collect();
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS qa ({});",
        columns.join(", ")
    ))?;
    let have: Vec<String> = conn
        .prepare("PRAGMA table_info(qa)")?
        .query_map([], |row| row.get::<_, String>(1))?
        .collect::<Result<Vec<_>, _>>()?;
    for (name, kind) in COLUMNS {
        if !have.iter().any(|h| h == name) {
            conn.execute_batch(&format!("ALTER TABLE qa ADD COLUMN {name} {kind}"))?;
        }
    }
    conn.execute_batch("CREATE INDEX IF NOT EXISTS qa_scanner ON qa (scanner);")
}

fn sql_value(v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => n.as_f64().map_or(SqlValue::Null, SqlValue::Real),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

fn json_value(v: SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::from(i),
        SqlValue::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        SqlValue::Text(s) => Value::String(s),
        SqlValue::Blob(_) => Value::Null,
    }
}
