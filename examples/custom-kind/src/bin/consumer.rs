//! Spillway's consumer function (both lanes), running `word-count` besides the kinds Spillway
//! ships.

use spillway_core::config::Function;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), spillway_core::lambda::Error> {
    spillway_core::lambda::run(Function::Consumer, spillway_example_custom_kind::kinds()).await
}
