//! SQL, one module per concern. Every statement is one text for both
//! backends (`$n` placeholders, `BIGINT`-compatible integers, `ON CONFLICT`,
//! `RETURNING`); only the DDL in [`migrate`] differs per backend.

pub(crate) mod accounts;
pub(crate) mod migrate;
pub(crate) mod queue;
