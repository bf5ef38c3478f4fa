"""liftoff on a local AWS emulator (moto in server mode, loopback only).

`python -m local deploy|up|down` is what `make deploy` (TARGET=local), `make local-up` and
`make local-down` run. The modules:

- `adapter`: the one place that changes templates for the emulator, always in a separate copy of
  the cloud assembly; every adaptation is listed in `ADAPTATIONS` and docs/local-emulator.md.
- `assembly`: reads a synthesized cloud assembly (stacks of a stage, templates, parameters).
- `emulator`: starts, records and stops the `moto_server` process.
- `aws`: the few boto3 calls the emulated flow needs (out-of-band secrets, images, outputs).
- `deploy`: the `make deploy` flow with the real CDK CLI.
"""
