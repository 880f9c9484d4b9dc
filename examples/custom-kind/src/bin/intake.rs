//! Spillway's intake function, knowing `word-count` besides the kinds Spillway ships.

use spillway_core::config::Function;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), spillway_core::lambda::Error> {
    spillway_core::lambda::run(Function::Intake, spillway_example_custom_kind::kinds()).await
}
