//! The bytes of simulated reports. A report's content depends only on what identifies it
//! (API, name, organization, window, format), never on when or how often it was made, so a
//! test can tell from a download that the right report arrived and that two downloads of one
//! report agree.
//!
//! JSON, CSV and XML are text that names the report and its window; XLSX is a real minimal
//! workbook (a ZIP with one sheet of inline strings) that spreadsheet programs open. RDE files
//! come gzipped (`.json.gz`, as in seed 000); CONNECT's download is a ZIP of `report.<ext>`
//! and `summary.json` (seed 002).

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use crate::ReportingApi;

/// The file formats the APIs render (each accepts its own subset, by its own spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Xml,
    Csv,
    Xlsx,
}

impl Format {
    /// Lower-case name, as most APIs and file extensions spell it.
    pub fn lower(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Xml => "xml",
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
    }

    /// Upper-case name, as RDE spells it.
    pub fn upper(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Xml => "XML",
            Format::Csv => "CSV",
            Format::Xlsx => "XLSX",
        }
    }
}

/// What a report is about.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReportContent {
    pub backend: ReportingApi,
    pub name: String,
    pub organization: String,
    pub format: Format,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// How the file is wrapped in storage.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Packaging {
    Plain,
    Gzip,
    /// CONNECT: a ZIP of `report.<ext>` and this `summary.json`.
    ConnectZip {
        summary: Value,
    },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ContentError {
    #[error("writing the archive: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("writing the file: {0}")]
    Io(#[from] std::io::Error),
}

const COLUMNS: [&str; 8] = [
    "report",
    "backend",
    "organization",
    "period_start",
    "period_end",
    "item",
    "quantity",
    "amount",
];
const ITEMS: [(&str, u32); 4] = [
    ("Microsoft 365 Business Basic", 600),
    ("Azure Plan", 12_500),
    ("Acronis Cyber Protect", 1_990),
    ("Fusion Seats", 450),
];

pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_default()
}

impl ReportContent {
    /// Three line items chosen and sized by a hash of what identifies the report.
    fn rows(&self) -> Vec<[String; 8]> {
        let digest = Sha256::digest(
            format!(
                "{}|{}|{}|{}|{}",
                self.backend.as_str(),
                self.name,
                self.organization,
                opt_time(self.start),
                opt_time(self.end)
            )
            .as_bytes(),
        );
        (0..3)
            .map(|i| {
                let (item, cents) = ITEMS[(usize::from(digest[i]) + i) % ITEMS.len()];
                let quantity = u32::from(digest[i + 8]) % 50 + 1;
                let amount = quantity * cents;
                [
                    self.name.clone(),
                    self.backend.as_str().to_string(),
                    self.organization.clone(),
                    opt_time(self.start),
                    opt_time(self.end),
                    item.to_string(),
                    quantity.to_string(),
                    format!("{}.{:02}", amount / 100, amount % 100),
                ]
            })
            .collect()
    }

    /// The report in its format, unwrapped.
    pub fn render(&self) -> Result<Vec<u8>, ContentError> {
        let rows = self.rows();
        Ok(match self.format {
            Format::Json => {
                let lines: Vec<Value> = rows
                    .iter()
                    .map(|r| json!({"item": r[5], "quantity": r[6].parse::<u32>().unwrap_or(0), "amount": r[7]}))
                    .collect();
                let doc = json!({
                    "report": self.name,
                    "backend": self.backend.as_str(),
                    "organization": self.organization,
                    "periodStart": opt_time(self.start),
                    "periodEnd": opt_time(self.end),
                    "rows": lines,
                });
                serde_json::to_vec_pretty(&doc).unwrap_or_default()
            }
            Format::Csv => {
                let mut out = csv_line(COLUMNS.iter().copied());
                for r in &rows {
                    out.push_str(&csv_line(r.iter().map(String::as_str)));
                }
                out.into_bytes()
            }
            Format::Xml => {
                let mut out = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<report name=\"{}\" backend=\"{}\" organization=\"{}\" periodStart=\"{}\" periodEnd=\"{}\">\n",
                    xml_escape(&self.name),
                    self.backend.as_str(),
                    xml_escape(&self.organization),
                    opt_time(self.start),
                    opt_time(self.end)
                );
                for r in &rows {
                    out.push_str(&format!(
                        "  <row item=\"{}\" quantity=\"{}\" amount=\"{}\"/>\n",
                        xml_escape(&r[5]),
                        r[6],
                        r[7]
                    ));
                }
                out.push_str("</report>\n");
                out.into_bytes()
            }
            Format::Xlsx => xlsx(&rows)?,
        })
    }

    /// The stored file: the report, wrapped as `packaging` says.
    pub fn package(&self, packaging: &Packaging) -> Result<Vec<u8>, ContentError> {
        let report = self.render()?;
        match packaging {
            Packaging::Plain => Ok(report),
            Packaging::Gzip => {
                let mut gz = GzEncoder::new(Vec::new(), Compression::default());
                gz.write_all(&report)?;
                Ok(gz.finish()?)
            }
            Packaging::ConnectZip { summary } => zip_of(&[
                (
                    format!("report.{}", self.format.lower()).as_str(),
                    report.as_slice(),
                ),
                (
                    "summary.json",
                    serde_json::to_vec_pretty(summary).unwrap_or_default().as_slice(),
                ),
            ]),
        }
    }
}

/// The file name extension and content type of a stored file.
pub(crate) fn file_type(format: Format, packaging: &Packaging) -> (String, &'static str) {
    match packaging {
        Packaging::Gzip => (format!("{}.gz", format.lower()), "application/gzip"),
        Packaging::ConnectZip { .. } => ("zip".into(), "application/zip"),
        Packaging::Plain => (
            format.lower().to_string(),
            match format {
                Format::Json => "application/json",
                Format::Csv => "text/csv",
                Format::Xml => "application/xml",
                Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            },
        ),
    }
}

/// One CSV record with CRLF-free `\n` ending; fields quoted only when they must be.
pub(crate) fn csv_line<'a>(fields: impl IntoIterator<Item = &'a str>) -> String {
    let mut line = fields
        .into_iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn zip_of(files: &[(&str, &[u8])]) -> Result<Vec<u8>, ContentError> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in files {
        zip.start_file(*name, options)?;
        zip.write_all(bytes)?;
    }
    Ok(zip.finish()?.into_inner())
}

const XLSX_CONTENT_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#;
const XLSX_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#;
const XLSX_WORKBOOK: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Report" sheetId="1" r:id="rId1"/></sheets></workbook>"#;
const XLSX_WORKBOOK_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#;

/// A one-sheet workbook: the header row, then the rows (quantities as numbers).
fn xlsx(rows: &[[String; 8]]) -> Result<Vec<u8>, ContentError> {
    let cell = |col: usize, row: usize, value: &str, numeric: bool| {
        let r = format!("{}{}", char::from(b'A' + col as u8), row);
        if numeric {
            format!("<c r=\"{r}\"><v>{value}</v></c>")
        } else {
            format!(
                "<c r=\"{r}\" t=\"inlineStr\"><is><t>{}</t></is></c>",
                xml_escape(value)
            )
        }
    };
    let mut sheet = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\"><sheetData>",
    );
    let header: Vec<String> = COLUMNS
        .iter()
        .enumerate()
        .map(|(c, v)| cell(c, 1, v, false))
        .collect();
    sheet.push_str(&format!("<row r=\"1\">{}</row>", header.concat()));
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, v)| cell(c, i + 2, v, c >= 6))
            .collect();
        sheet.push_str(&format!("<row r=\"{}\">{}</row>", i + 2, cells.concat()));
    }
    sheet.push_str("</sheetData></worksheet>");
    zip_of(&[
        ("[Content_Types].xml", XLSX_CONTENT_TYPES.as_bytes()),
        ("_rels/.rels", XLSX_RELS.as_bytes()),
        ("xl/workbook.xml", XLSX_WORKBOOK.as_bytes()),
        ("xl/_rels/workbook.xml.rels", XLSX_WORKBOOK_RELS.as_bytes()),
        ("xl/worksheets/sheet1.xml", sheet.as_bytes()),
    ])
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn report(format: Format) -> ReportContent {
        ReportContent {
            backend: ReportingApi::Cmp,
            name: "Daily, \"usage\"".into(),
            organization: "org".into(),
            format,
            start: chrono::DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z")
                .ok()
                .map(|t| t.to_utc()),
            end: chrono::DateTime::parse_from_rfc3339("2026-10-01T23:59:59Z")
                .ok()
                .map(|t| t.to_utc()),
        }
    }

    #[test]
    fn content_is_deterministic_and_names_the_report() {
        for f in [Format::Json, Format::Csv, Format::Xml] {
            let a = report(f).render().expect("render");
            assert_eq!(a, report(f).render().expect("render"));
            let text = String::from_utf8(a).expect("utf8");
            assert!(
                text.contains("2026-10-01T00:00:00Z") && text.contains("2026-10-01T23:59:59Z"),
                "{text}"
            );
        }
        let csv = String::from_utf8(report(Format::Csv).render().expect("csv")).expect("utf8");
        assert!(
            csv.starts_with("report,backend,organization,period_start,period_end,item,quantity,amount\n"),
            "{csv}"
        );
        assert!(csv.contains("\"Daily, \"\"usage\"\"\""), "{csv}");
    }

    #[test]
    fn xlsx_and_connect_zip_are_real_archives() {
        let xlsx = report(Format::Xlsx).render().expect("xlsx");
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(xlsx)).expect("zip");
        let mut sheet = String::new();
        archive
            .by_name("xl/worksheets/sheet1.xml")
            .expect("sheet")
            .read_to_string(&mut sheet)
            .expect("read");
        assert!(sheet.contains("2026-10-01T00:00:00Z"));
        let summary = json!({"id": "RP-1"});
        let zipped = report(Format::Csv)
            .package(&Packaging::ConnectZip { summary })
            .expect("zip");
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zipped)).expect("zip");
        assert!(archive.by_name("report.csv").is_ok());
        assert!(archive.by_name("summary.json").is_ok());
    }
}
