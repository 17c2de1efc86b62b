//! Fusion's usage SDRs (JSON arrays of flat objects) as CSV: the documented columns first, in
//! the seed's order, then any other field the rows have, in name order.

use serde_json::Value;

/// Columns of the phone usage SDR, in the seed's order.
pub(super) const PHONE_USAGE_COLUMNS: &[&str] = &[
    "distributor",
    "reseller",
    "tenant",
    "subscription",
    "group",
    "username",
    "phoneNumber",
];
/// Columns of the product usage SDR, in the seed's order.
pub(super) const PRODUCT_USAGE_COLUMNS: &[&str] = &[
    "distributor",
    "reseller",
    "tenant",
    "subscription",
    "group",
    "sku",
    "quantity",
    "used",
];

/// A CSV field, quoted when it must be.
fn field(v: &Value) -> String {
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The columns of `rows`: `documented` first, then the other fields the rows have.
pub(super) fn columns(rows: &[Value], documented: &[&str]) -> Vec<String> {
    let mut columns: Vec<String> = documented.iter().map(|c| c.to_string()).collect();
    for row in rows {
        if let Some(obj) = row.as_object() {
            for k in obj.keys() {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
    }
    columns
}

/// The header line of `columns`.
pub(super) fn header(columns: &[String]) -> String {
    let mut out = columns
        .iter()
        .map(|c| field(&Value::String(c.clone())))
        .collect::<Vec<_>>()
        .join(",");
    out.push_str("\r\n");
    out
}

/// One row as a line of `columns` (missing fields are empty).
pub(super) fn line(row: &Value, columns: &[String]) -> String {
    let mut out = columns
        .iter()
        .map(|c| field(row.get(c).unwrap_or(&Value::Null)))
        .collect::<Vec<_>>()
        .join(",");
    out.push_str("\r\n");
    out
}

/// A field of `row` that `columns` lacks, if any.
pub(super) fn unknown_field<'a>(row: &'a Value, columns: &[String]) -> Option<&'a str> {
    row.as_object()?
        .keys()
        .find(|k| !columns.contains(k))
        .map(String::as_str)
}

/// An array of flat objects as CSV, every field of every row kept.
pub(super) fn to_csv(rows: &[Value], documented: &[&str]) -> String {
    let columns = columns(rows, documented);
    let mut out = header(&columns);
    for row in rows {
        out.push_str(&line(row, &columns));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_rows_as_csv() {
        let rows = vec![
            json!({"group": "Netaxis", "sku": "Fusion Seats", "quantity": 29, "used": 5, "zone": "eu"}),
            json!({"group": "Net, \"axis\"", "sku": "SIP", "quantity": 14}),
        ];
        assert_eq!(
            to_csv(&rows, &["group", "sku", "quantity", "used"]),
            "group,sku,quantity,used,zone\r\nNetaxis,Fusion Seats,29,5,eu\r\n\"Net, \"\"axis\"\"\",SIP,14,,\r\n"
        );
        let columns = columns(&rows[1..], &["group"]);
        assert_eq!(unknown_field(&rows[0], &columns), Some("used"));
        assert_eq!(unknown_field(&rows[1], &columns), None);
    }
}
