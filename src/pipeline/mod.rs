//! Wiring of the stages: [`worker`] turns one assembled series into the result objects (segment,
//! mesh, SEG, STL, Encapsulated STL, report); [`offline`] is `osteon segment`, the worker without the
//! network; [`report`] is the per-series `report.json`.

pub mod assembler;
pub mod export;
pub mod heap;
pub mod offline;
pub mod qa;
pub mod queue;
pub mod report;
pub mod retention;
pub mod serve;
pub mod spool;
pub mod worker;
