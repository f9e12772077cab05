# Tool and provider versions. State lives in a remote backend (see backend.tf.example), never in git.
terraform {
  required_version = ">= 1.7.0" # terraform test with mock_provider (tests/); checked with 1.11.4

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 7.0"
    }
  }
}
