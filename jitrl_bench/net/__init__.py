"""HTTP for the parts that talk to servers (model APIs, judges): whole-request deadlines and bounded replies."""
