//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, off in every build that serves). Not an
//! API: it follows the code it wraps.

use serde_json::Value;

use crate::Problem;

/// Every violation of the config's JSON Schema in `value`, as loading reports them.
pub fn schema_problems(value: &Value) -> Vec<Problem> {
    crate::validate::schema_problems(value)
}
