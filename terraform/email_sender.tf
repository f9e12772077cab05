# The sender of the run emails. AWS mails a verification link to this address; until it is clicked (and, in the SES
# sandbox, until each recipient is verified too) SES refuses to send and the app records that on the run.
# Two stages sending from one address share the identity: only one of them manages it (manage_ses_identity), or the
# first `terraform destroy` would unverify the other stage's sender.
resource "aws_ses_email_identity" "sender" {
  count = var.manage_ses_identity ? 1 : 0
  email = var.ses_from_email
}
