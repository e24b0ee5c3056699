"""Analysis of received messages: rule files (Artemisa's language), tool fingerprints,
correlation, the INVITE decision tree, and alerts.

- `rules`, `rule_model`: read and check rule files into typed `Rule`s and a `RuleSet`;
- `fields`: the message fields rules and fingerprints search (`User-Agent`, `sdp.o`...);
- `evaluate`: run Classification and Fingerprinting rules on one message;
- `program`, `variables`, `outcome`: rules compiled into closures once, the variables a
  message's rules read worked out lazily, and what running rules gives (`Outcome`);
- `fingerprints`: name the tool or client that sent a message, with evidence;
- `facts`, `spoofing`, `tollfraud`: what the engine works out about a request (tool,
  spoofed or not, extension, route, the number dialled);
- `correlate`: windows of the Correlation.* rules over messages in time order;
- `decision`: the paper's INVITE decision tree, in passive mode;
- `alerts`: message and composed alerts, updated rather than repeated;
- `engine`: all of the above, messages in, alerts out (live and offline alike);
- `live`, `actions`, `settings`, `commands`: the honeypot's analysis sink, `system`
  commands, the [analysis] and [alerts] configuration, `siptrap rules`.
"""
