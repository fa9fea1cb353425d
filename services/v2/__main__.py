"""``python -m services.v2 [--port 8002] [--host 127.0.0.1]``"""

from services.bookservice.cli import main
from services.v2 import DEFAULT_PORT, VERSION, Strategy

if __name__ == "__main__":
    main(VERSION, Strategy, default_port=DEFAULT_PORT)
