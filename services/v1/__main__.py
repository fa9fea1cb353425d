"""``python -m services.v1 [--port 8001] [--host 127.0.0.1]``"""

from services.bookservice.cli import main
from services.v1 import DEFAULT_PORT, VERSION, Strategy

if __name__ == "__main__":
    main(VERSION, Strategy, default_port=DEFAULT_PORT)
