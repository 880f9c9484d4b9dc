use async_trait::async_trait;
use serde_json::Value;

use crate::processor::{ProcessError, Processor, Work};

/// Returns its payload as its result.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

#[async_trait]
impl Processor for Echo {
    async fn process(&self, work: &Work) -> Result<Value, ProcessError> {
        serde_json::from_str(work.payload.get())
            .map_err(|e| ProcessError::permanent(format!("payload is not JSON: {e}")))
    }
}
