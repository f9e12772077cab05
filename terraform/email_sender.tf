# The sender of the run emails. AWS mails a verification link to this address; until it is clicked (and, in the SES
# sandbox, until each recipient is verified too) SES refuses to send and the app records that on the run.
resource "aws_ses_email_identity" "sender" {
  email = var.ses_from_email
}
