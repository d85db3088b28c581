//! The quorum decisions of a coordination, alone: what a read or a write has heard so far and
//! what it should answer, with no store, no clock and no outputs. The node feeds them replica
//! answers and acts on their decisions (replies, repairs, hints); these modules are tested on
//! their own.
//!
//! Shaped after Riak's get and put cores: a coordinator adds replica results one by one
//! (`add_result`), answers once it has enough (`response`), and decides what to do after
//! (`final_action`: read repair).

pub mod get;
pub mod merge;
pub mod put;

pub use get::{GetAnswer, GetCore, GetFinal};
pub use merge::{Join, merge_all};
pub use put::{PutAnswer, PutCore};
