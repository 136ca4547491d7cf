pub mod dotenv;
