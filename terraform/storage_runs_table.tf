# The truth about every run: one item per run (partition key run_id) plus the slot counter item "#slots"
# (chalicelib/runs.py), a sparse index of the runs holding a slot for the sweeper, and an index of each caller's runs for
# GET /runs. Runs are kept, not expired: only the per-caller daily quota items "#quota#..." carry the TTL attribute.
resource "aws_dynamodb_table" "runs" {
  # checkov:skip=CKV_AWS_119: Encrypted at rest with the AWS-managed key aws/dynamodb; no customer-managed KMS key is created (cost and key-policy upkeep).
  name         = local.runs_table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "run_id"

  attribute {
    name = "run_id"
    type = "S"
  }

  attribute {
    name = "holding"
    type = "S"
  }

  attribute {
    name = "queued_at"
    type = "S"
  }

  attribute {
    name = "caller"
    type = "S"
  }

  # Sparse: only runs holding a slot carry `holding` (chalicelib/runs.py), so the sweeper's Query reads the few runs
  # in flight, oldest first, instead of scanning every run ever kept.
  global_secondary_index {
    name            = local.runs_slot_index
    hash_key        = "holding"
    range_key       = "queued_at"
    projection_type = "KEYS_ONLY"
  }

  # GET /runs: one caller's runs, newest first (chalicelib/runs.py CALLER_INDEX, CALLER_INDEX_ATTRIBUTES).
  global_secondary_index {
    name               = local.runs_caller_index
    hash_key           = "caller"
    range_key          = "queued_at"
    projection_type    = "INCLUDE"
    non_key_attributes = local.runs_caller_index_attributes
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }

  deletion_protection_enabled = false
}
