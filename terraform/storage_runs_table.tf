# The truth about every run: one item per run (partition key run_id) plus the slot counter item "#slots"
# (chalicelib/runs.py). Runs are kept, not expired: the app writes no TTL attribute, so no TTL is configured.
resource "aws_dynamodb_table" "runs" {
  # checkov:skip=CKV_AWS_119: Encrypted at rest with the AWS-managed key aws/dynamodb; no customer-managed KMS key is created (cost and key-policy upkeep).
  name         = local.runs_table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "run_id"

  attribute {
    name = "run_id"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }

  deletion_protection_enabled = false
}
