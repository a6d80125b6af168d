//! The integration suite: the real service over real HTTP, each test on SQLite and on
//! PostgreSQL, each with its own fresh database.

mod helpers;
mod people;

mod account_admin;
mod accounts;
mod audit;
mod authorization;
mod case_list;
mod cli;
mod cli_grants;
mod grants;
mod health;
mod instance;
mod intake;
mod lockout;
mod offline;
mod openapi;
mod privacy;
mod reports;
mod storage;
mod telemetry;
