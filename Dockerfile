FROM python:3.11-slim
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir .
ENV AQPL_DATA_DIR=/data
EXPOSE 8000
CMD ["aqpl", "serve", "--no-worker", "--host", "0.0.0.0"]
