"""What each verb of the release tool does, in order: facts through `release.adapters`, a decision from
`release.pure`, then the change, the wait and the ledger's record, with the stage's lock held."""
