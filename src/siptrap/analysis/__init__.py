"""Analysis of received messages: rule files (Artemisa's language), tool fingerprints.

- `rules`: read and check rule files into typed `Rule`s and a `RuleSet`;
- `fields`: the message fields rules and fingerprints search (`User-Agent`, `sdp.o`...);
- `evaluate`: run Classification and Fingerprinting rules on one message;
- `fingerprints`: name the tool or client that sent a message, with evidence.
"""
